"""One trainer per run directory: an advisory `flock` on checkpoints/<run>/.trainer.lock, held by the main
process for the whole run and released by the kernel when it exits, however it exits.

Why: a workflow killed with SIGKILL leaves its train job running; a rerun must not start a second trainer
on the same checkpoints (two writers, one run's checkpoints pruned by the other). `lock_holder` lets the
workflow's stale-lock check (under workflow/lib/) see such an orphaned trainer before it clears
the workflow's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gpt2core.errors import WikiGPTError

LOCK_NAME = ".trainer.lock"
GRACE_S = 5.0  # seconds a dying holder gets to release the lock (see hold_run_lock)


def _pid_in(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def _flock_within(fd: int, operation: int, grace_s: float) -> bool:
    """Take `operation` (LOCK_EX or LOCK_SH) on `fd`, retrying for up to `grace_s` seconds; False if it stayed
    held by another process."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@contextlib.contextmanager
def hold_run_lock(checkpoints: str | Path, grace_s: float = GRACE_S) -> Iterator[None]:
    """Hold the run's lock for the duration; a holder still alive after `grace_s` is a one-line error naming
    its pid. The grace lets a trainer killed with its torchrun (`kill -9` of the group) finish dying: its
    workers run in their own session and get their SIGKILL only when the kernel sees torchrun gone."""
    path = Path(checkpoints) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock_within(fd, fcntl.LOCK_EX, grace_s):
            raise WikiGPTError(f"{Path(checkpoints)}: another trainer (pid {_pid_in(path)}) is training this run; "
                               "wait for it to end or stop it, then rerun")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it could race a new holder)


def lock_holder(checkpoints: str | Path, grace_s: float = 0.0) -> str | None:
    """The pid (as recorded) of a live process holding the run's lock after up to `grace_s` seconds, or None
    when nobody holds it (then or within the grace)."""
    path = Path(checkpoints) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return None if _flock_within(fd, fcntl.LOCK_SH, grace_s) else _pid_in(path)
    finally:
        os.close(fd)
