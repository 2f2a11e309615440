"""Atomic outputs (gpt2core.fsutil) and checkpoint pruning: a killed writer never costs an earlier good copy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2core.fsutil import atomic_dir, process_start_time, remove_stale_temporaries
from gpt2core.training.checkpoint.plain import prune_checkpoints


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_atomic_dir_replaces_the_whole_directory_and_leaves_no_temporaries(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_keeps_the_old_directory(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "good.txt").write_text("good")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in final.iterdir()) == ["good.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_writer_killed_between_its_two_renames_gets_its_old_copy_back(tmp_path: Path) -> None:
    """replace_dir renames `final` aside, then the new one in: killed between the two, only `.old-<pid>`
    holds the last good copy, and the next writer restores it instead of deleting it."""
    final = tmp_path / "step_0000010"
    old = tmp_path / f".step_0000010.old-{dead_pid()}"
    old.mkdir()
    (old / "model.safetensors").write_text("good")
    remove_stale_temporaries(final)
    assert (final / "model.safetensors").read_text() == "good" and not old.exists()


def test_stale_temporaries_of_dead_writers_are_removed_when_final_exists(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    pid = dead_pid()
    for name in (f".out.tmp-{pid}", f".out.old-{pid}"):
        (tmp_path / name).mkdir()
    remove_stale_temporaries(final)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_killed_writer_not_yet_reaped_counts_as_dead(tmp_path: Path) -> None:
    """A zombie (killed, its parent not yet waiting on it) still answers kill(pid, 0) but writes nothing more."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = process_start_time(child.pid)
        final = tmp_path / "out"
        (tmp_path / f".out.tmp-{child.pid}.{start}").mkdir()
        remove_stale_temporaries(final)
        assert (tmp_path / f".out.tmp-{child.pid}.{start}").exists()  # its writer is alive: kept
        child.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        remove_stale_temporaries(final)
        assert [p.name for p in tmp_path.iterdir()] == []
    finally:
        child.kill()
        child.wait()


def make_steps(root: Path, *steps: int) -> None:
    for step in steps:
        d = root / f"step_{step:07d}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text("{}")


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize(("keep_last", "kept"), [(1, [30]), (2, [20, 30]), (5, [10, 20, 30])])
def test_prune_keeps_the_newest_keep_last(tmp_path: Path, keep_last: int, kept: list[int]) -> None:
    make_steps(tmp_path, 10, 20, 30)
    prune_checkpoints(tmp_path, 30, keep_last)
    assert names(tmp_path) == [f"step_{s:07d}" for s in kept]


def test_prune_counts_back_from_the_checkpoint_just_written_not_from_newer_ones(tmp_path: Path) -> None:
    make_steps(tmp_path, 10, 20, 30, 40)  # 30 and 40: newer (damaged) ones a resume fell back past
    prune_checkpoints(tmp_path, 20, keep_last=1)
    assert names(tmp_path) == ["step_0000020", "step_0000030", "step_0000040"]
