"""One trainer per run directory: a second `python -m gpt2core.train` on the same checkpoints is a one-line
error naming the first one's pid, and the stale-lock check keeps Snakemake's lock while the killed
Snakemake's trainer still runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import snakemake_locks
from test_train_helpers import tiny_sections, write_manifest

from gpt2core.errors import WikiGPTError
from gpt2core.training.run_lock import LOCK_NAME, hold_run_lock, lock_holder

HOLD = """
import sys, time
from gpt2core.training.run_lock import hold_run_lock
with hold_run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding the run lock on tmp_path/run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path, holder: subprocess.Popen) -> None:
    assert lock_holder(tmp_path / "run") == str(holder.pid)
    t0 = time.monotonic()
    with pytest.raises(WikiGPTError, match=rf"{tmp_path / 'run'}: another trainer \(pid {holder.pid}\) is training"):
        with hold_run_lock(tmp_path / "run", grace_s=0.3):
            pass
    assert time.monotonic() - t0 >= 0.3  # a live holder is refused only after the grace
    holder.kill()
    holder.wait()
    assert lock_holder(tmp_path / "run") is None  # released by the kernel when its holder died
    with hold_run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() != str(holder.pid)


def test_a_holder_that_dies_within_the_grace_gives_way(tmp_path: Path) -> None:
    """kill -9 of torchrun's group and an immediate relaunch: the old worker (its own session) dies moments
    after torchrun, and the new trainer takes the lock then instead of refusing."""
    dying = subprocess.Popen([sys.executable, "-c", HOLD.replace("time.sleep(60)", "time.sleep(1.5)"),
                              str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert dying.stdout.readline().strip() == "held"
        assert lock_holder(tmp_path / "run") == str(dying.pid)
        t0 = time.monotonic()
        with hold_run_lock(tmp_path / "run", grace_s=60):
            assert time.monotonic() - t0 >= 1.0  # it waited for the holder's release, then took the lock
            assert (tmp_path / "run" / LOCK_NAME).read_text().strip() != str(dying.pid)
    finally:
        dying.kill()
        dying.wait()


def test_no_lock_file_means_no_holder(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "nothing") is None


def test_stale_snakemake_lock_is_kept_while_its_trainer_runs(tmp_path: Path, holder: subprocess.Popen) -> None:
    sm = tmp_path / ".snakemake"
    (sm / "locks").mkdir(parents=True)
    (sm / "locks" / "0.output.lock").write_text("results/x\n")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    time.sleep(0.01)
    (sm / snakemake_locks.OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                                  "start": None}))
    said: list[str] = []
    t0 = time.monotonic()
    assert not snakemake_locks.clear_stale_locks(sm, said.append, runs=[tmp_path / "run"], grace_s=0.5)
    assert time.monotonic() - t0 >= 0.5  # it waited out the grace before keeping the lock
    assert (sm / "locks" / "0.output.lock").exists()
    assert f"its trainer (pid {holder.pid}) still trains" in said[0]
    holder.kill()
    holder.wait()
    assert snakemake_locks.clear_stale_locks(sm, said.append, runs=[tmp_path / "run"])  # now provably stale


def test_stale_snakemake_lock_is_removed_when_its_trainer_dies_within_the_grace(tmp_path: Path) -> None:
    """kill -9 of the whole group: torchrun's worker (its own session) dies moments after its launcher, so a
    rerun started at once may still see it hold the run lock; the check waits for it rather than refuse."""
    dying = subprocess.Popen([sys.executable, "-c", HOLD.replace("time.sleep(60)", "time.sleep(2.0)"),
                              str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert dying.stdout.readline().strip() == "held"
        sm = tmp_path / ".snakemake"
        (sm / "locks").mkdir(parents=True)
        (sm / "locks" / "0.output.lock").write_text("results/x\n")
        time.sleep(0.01)
        (sm / snakemake_locks.OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(),
                                                      "start": None}))
        assert lock_holder(tmp_path / "run") == str(dying.pid)
        said: list[str] = []
        assert snakemake_locks.clear_stale_locks(sm, said.append, runs=[tmp_path / "run"], grace_s=30)
        assert not list((sm / "locks").iterdir()) and "stale Snakemake lock" in said[0]
    finally:
        dying.kill()
        dying.wait()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_the_trainer_cli_refuses_a_run_another_trainer_holds(tmp_path: Path, holder: subprocess.Popen) -> None:
    write_manifest(tmp_path)
    model, train = tiny_sections()
    proc = subprocess.run([sys.executable, "-m", "gpt2core.train", "--manifest", str(tmp_path / "manifest.json"),
                           "--model", json.dumps(model), "--train", json.dumps(train), "--data-seed", "1234",
                           "--checkpoints", str(tmp_path / "run"), "--done", str(tmp_path / "done.json"),
                           "--metrics", str(tmp_path / "metrics.jsonl")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'run'}: another trainer (pid {holder.pid}) is training this run; wait for it to end "
        "or stop it, then rerun")
    assert not (tmp_path / "done.json").exists()
