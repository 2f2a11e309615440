"""Was `train` forced in this Snakemake invocation? Snakemake's force flags read for the trainer's note.

Why on the workflow side: the flags (`-F`, `-R rule|output`, `-f rule|output`) are Snakemake's; the
workflow's `onstart` reads them from `workflow.dag_settings` and leaves the trainer a plain note
(gpt2core/training/retrain.py), so the library never interprets a Snakemake option.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def _norm(path: str) -> str:
    return os.path.normpath(path)


def train_forced(rule: str, outputs: Iterable[str], *, forceall: bool, forcerun: Iterable[str],
                 forcetargets: bool, targets: Iterable[str]) -> bool:
    """Was `rule` (with `outputs`) forced by name or output: `-F`, `-R rule|output`, `-f rule|output`?

    Forcing a rule upstream of it (say `-R gather`) reruns it too but does not count: with the same data
    and config the finished run is the result that rerun would train again."""
    names = {rule} | {_norm(o) for o in outputs}
    forced = {entry if entry == rule else _norm(entry) for entry in forcerun}
    if forcetargets:
        forced |= {entry if entry == rule else _norm(entry) for entry in targets}
    return forceall or bool(names & forced)
