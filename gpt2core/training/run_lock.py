"""One trainer per run directory: an advisory `flock` on checkpoints/<run>/.trainer.lock, held by the main
process for the whole run and released by the kernel when it exits, however it exits.

Why: a Snakemake killed with SIGKILL leaves its train job running; a rerun must not start a second trainer
on the same checkpoints (two writers, one run's checkpoints pruned by the other). `lock_holder` lets the
stale-lock check (gpt2core.integrity) see such an orphaned trainer before it clears Snakemake's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gpt2core.errors import WikiGPTError

LOCK_NAME = ".trainer.lock"


def _pid_in(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def hold_run_lock(checkpoints: str | Path) -> Iterator[None]:
    """Hold the run's lock for the duration; another live holder is a one-line error naming its pid."""
    path = Path(checkpoints) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WikiGPTError(f"{Path(checkpoints)}: another trainer (pid {_pid_in(path)}) is training this run; "
                               "wait for it to end or stop it, then rerun") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it could race a new holder)


def lock_holder(checkpoints: str | Path) -> str | None:
    """The pid (as recorded) of a live process holding the run's lock, or None when nobody holds it."""
    path = Path(checkpoints) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(path)
    finally:
        os.close(fd)
    return None
