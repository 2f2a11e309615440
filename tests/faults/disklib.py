"""A small disk to fill: a tmpfs of a few KiB mounted for one test (root only; skipped with a reason where
it cannot be mounted; CI runs as root), a filler that leaves a set amount of room on it, and the one-line
check every full-disk test makes. The one tmpfs helper of the suite: the test process mounts it itself (no
`unshare -m` subprocess), so the code under test runs in-process and its one line can be captured."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt2core.errors import run_cli


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` (created) holds a tmpfs of `size` (e.g. "256k") until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({proc.stderr.strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs at tmp_path/small."""
    with mounted_tmpfs(tmp_path / "small", "256k") as mnt:
        yield mnt


def fill_leaving(disk: Path, room: int) -> Path:
    """Fill `disk` with one file until the disk is full (ENOSPC), then give back `room` bytes; the file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    os.truncate(filler, max(0, filler.stat().st_size - room))
    return filler


def one_line_error(fn, capsys) -> str:
    """Run `fn` as a stage script does; return the one line it printed (it must exit 1)."""
    with pytest.raises(SystemExit) as info:
        run_cli(fn)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()
