"""Repair of stale Snakemake locks: the workflow's own state, kept out of the gpt2core library.

Snakemake's lock files under .snakemake/locks/ hold no process id, so a Snakemake killed with SIGKILL leaves
them behind and the next plain run refuses to start. `record_lock_owner()` (from the workflow's `onstart:`,
i.e. after the lock is taken) notes who holds the lock; `clear_stale_locks()` (when the workflow is parsed,
before Snakemake checks its lock) removes the lock only when that owner is provably dead on this host. A live
run's lock is never touched, so a second Snakemake on the same directory is still refused.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from gpt2core.fsutil import process_running, process_start_time, write_text_atomic
from gpt2core.training.run_lock import GRACE_S, lock_holder

OWNER = "wikigpt-lock-owner.json"


def record_lock_owner(snakemake_dir: str | Path = ".snakemake") -> None:
    """Note this process (host, pid, start time) as the holder of the lock just taken."""
    pid = os.getpid()
    owner = {"host": socket.gethostname(), "pid": pid, "start": process_start_time(pid)}
    write_text_atomic(Path(snakemake_dir) / OWNER, json.dumps(owner) + "\n")


def clear_stale_locks(snakemake_dir: str | Path = ".snakemake",
                      warn: Callable[[str], None] = print, runs: Iterable[str | Path] = (),
                      grace_s: float = GRACE_S) -> bool:
    """Remove .snakemake/locks/* when the recorded owner is gone from this host; True if removed.
    Unknown owner, another host, a live owner, or locks newer than the owner record: leave them for
    Snakemake to refuse on (its message says `snakemake --unlock`). So is a dead owner whose trainer still
    runs on one of `runs` (checkpoint directories) after `grace_s`: SIGKILL to Snakemake alone leaves its
    jobs running. The grace is for a `kill -9` of the whole group: torchrun's workers run in their own
    session and die only when the kernel tells them their launcher died, moments after it."""
    snakemake_dir = Path(snakemake_dir)
    locks = snakemake_dir / "locks"
    lock_files = sorted(p for p in locks.glob("*.lock") if p.is_file()) if locks.is_dir() else []
    if not lock_files:
        return False
    owner_file = snakemake_dir / OWNER
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
        recorded = owner_file.stat().st_mtime_ns
        newest_lock = max(p.stat().st_mtime_ns for p in lock_files)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid == os.getpid() or newest_lock > recorded:
        return False  # another host, or locks taken after the owner was noted (a run not yet at onstart)
    if process_running(pid, start):
        return False
    for run in runs:
        trainer = lock_holder(run, grace_s)
        if trainer is not None:
            warn(f"warning: the Snakemake that locked {locks} (pid {pid}) was killed, but its trainer (pid "
                 f"{trainer}) still trains {run}: wait for it to end or stop it, then rerun")
            return False
    for lock in lock_files:
        lock.unlink(missing_ok=True)
    (snakemake_dir / OWNER).unlink(missing_ok=True)
    warn(f"warning: removed a stale Snakemake lock in {locks} (its Snakemake, pid {pid}, was killed)")
    return True
