"""Did the user ask for a finished run to be trained again? A note from the workflow to the trainer.

Why a note: when the workflow reruns `train` after a finished run, the trainer alone cannot tell why. A
forced rerun (`--forcerun train`, or `-F`, or `-f` on train's outputs) asks for a new run from step 0; a
plain rerun after a workflow that was killed while its trainer ran on and finished (its job was left
"incomplete") asks only for the outputs, and retraining then would throw away a finished run (a day of GPU
work) for the same weights. The workflow deletes a job's outputs before running it in both cases, so they
cannot tell either. The workflow's `onstart` (never run by a dry run) knows which rules it was told to force
(workflow/lib/ reads its flags): it writes `retrain.json` in the run's checkpoint directory when train is
forced and removes it otherwise, so the note always describes the latest invocation; the trainer reads it at
start and removes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpt2core.fsutil import write_text_atomic

REQUEST = "retrain.json"


def set_request(checkpoints: str | Path, forced: bool) -> None:
    """Write the note when `forced`, remove any older one otherwise (from the workflow's onstart)."""
    path = Path(checkpoints) / REQUEST
    if forced:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"retrain": True}) + "\n")
    else:
        path.unlink(missing_ok=True)


def requested(checkpoints: str | Path) -> bool:
    """Does the latest workflow invocation ask to train this run again from step 0?"""
    return (Path(checkpoints) / REQUEST).is_file()


def clear(checkpoints: str | Path) -> None:
    """The trainer has acted on the note (it is for one start only)."""
    (Path(checkpoints) / REQUEST).unlink(missing_ok=True)
