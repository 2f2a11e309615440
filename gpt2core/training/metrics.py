"""The run's metrics history, one JSON line per step (plus valid-loss lines). It lives beside the
checkpoints (the workflow deletes a failed job's declared outputs), is cut back to the resumed step on
resume, and is copied to results/train/metrics.jsonl when the run ends."""

from __future__ import annotations

import json
from pathlib import Path

from gpt2core.fsutil import atomic_path, naming_full_disk


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is gone too
    return lines


class MetricsLog:
    """Append-only JSONL; opening with `resume_step` keeps only lines with step <= resume_step."""

    def __init__(self, path: str | Path, resume_step: int = 0) -> None:
        self.path = Path(path)
        kept = [m for m in read_metrics(self.path) if m.get("step", 0) <= resume_step] if resume_step else []
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(m) + "\n" for m in kept), encoding="utf-8")
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held for the run)

    def write(self, record: dict) -> None:
        with naming_full_disk(self.path):
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()
