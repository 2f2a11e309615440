"""Run an external process under a deadline and a watchdog, its output streamed to a log.

A process we start must never hang a job: WikiExtractor whose writer died of a full disk waits forever for
it, and `subprocess.run(capture_output=True)` showed nothing meanwhile. Here the output goes line by line to
the log (the job's log shows progress and the cause), and the process tree is killed when it runs past its
deadline, when neither its output folder nor its log grew for `stall_s`, when a line says the disk is full,
or `dead_worker_s` after a line says a worker died (the caller's `died`: a traceback) if it has not ended
by then. Memory stays bounded: only a tail of the output and the lines the caller asks for are kept.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gpt2core.errors import DISK_FULL

LINE_LIMIT = 1 << 16  # a longer line is read (and logged) in pieces
_FULL_RE = re.compile("|".join(re.escape(os.strerror(code)) for code in DISK_FULL))


@dataclass(frozen=True)
class Limits:
    """How long a watched process may run: floor_s + s_per_mb per MB of input, and at most stall_s without
    any new output (config `limits.extract_*`; these defaults where unset)."""

    floor_s: float = 3600
    s_per_mb: float = 120
    stall_s: float = 1800
    poll_s: float = 2.0
    dead_worker_s: float = 60  # after a line says a worker died, the rest get this long to exit by themselves

    def deadline_s(self, input_bytes: int) -> float:
        return self.floor_s + self.s_per_mb * input_bytes / 1e6

    @classmethod
    def from_limits(cls, limits: dict | None, prefix: str) -> Limits:
        limits = limits or {}
        keys = {"floor_s": "deadline_floor_s", "s_per_mb": "deadline_s_per_mb", "stall_s": "stall_s"}
        return cls(**{f: limits[f"{prefix}_{k}"] for f, k in keys.items() if f"{prefix}_{k}" in limits})


@dataclass
class Outcome:
    """What a watched run left: its exit code, why it was stopped (None: it ended by itself), the lines the
    caller's `keep` picked, and the last lines of its output."""

    returncode: int
    stopped: str | None = None
    kept: list[str] = field(default_factory=list)
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tree_size(folder: Path | None) -> int:
    if folder is None or not folder.exists():
        return 0
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def run_watched(cmd: list[str], log: str | Path | None, deadline_s: float, limits: Limits,
                watch_dir: Path | None = None, keep: Callable[[str], bool] = lambda line: False,
                keep_max: int = 100, died: Callable[[str], bool] = lambda line: False) -> Outcome:
    """Run `cmd` (stdout and stderr together, streamed to `log`) until it exits or is stopped."""
    outcome = Outcome(returncode=0)
    last_activity = [time.monotonic()]
    disk_full = threading.Event()
    worker_died: list[float] = []  # when a line first said so
    log_fh = open(log, "ab") if log is not None else None  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def pump() -> None:
        while piece := proc.stdout.readline(LINE_LIMIT):
            last_activity[0] = time.monotonic()
            if log_fh is not None:
                try:
                    log_fh.write(piece)
                    log_fh.flush()
                except OSError:
                    pass  # the log may sit on the full disk: keep draining the pipe
            line = piece.decode("utf-8", "replace").rstrip("\n")
            outcome.tail.append(line[:1000])
            if keep(line) and len(outcome.kept) < keep_max:
                outcome.kept.append(line[:1000])
            if _FULL_RE.search(line):
                disk_full.set()
            if not worker_died and died(line):
                worker_died.append(time.monotonic())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    start = time.monotonic()
    size = _tree_size(watch_dir)
    try:
        while True:
            try:
                left = deadline_s - (time.monotonic() - start)
                outcome.returncode = proc.wait(timeout=max(0.01, min(limits.poll_s, left)))
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            grown = _tree_size(watch_dir)
            if grown != size:
                size, last_activity[0] = grown, now
            if disk_full.is_set():
                outcome.stopped = "disk full"
            elif now - start > deadline_s:
                outcome.stopped = f"ran past its deadline of {deadline_s:.0f} s"
            elif now - last_activity[0] > limits.stall_s:
                outcome.stopped = f"no new output for {limits.stall_s:.0f} s (a worker died or hangs)"
            elif worker_died and now - worker_died[0] > limits.dead_worker_s:
                outcome.stopped = f"a worker died and the rest did not exit within {limits.dead_worker_s:.0f} s"
            if outcome.stopped:
                _kill_tree(proc)
                outcome.returncode = proc.wait()
                break
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt, ...): never leave it running
            _kill_tree(proc)
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        if log_fh is not None:
            try:
                log_fh.close()
            except OSError:
                pass
    return outcome
