"""Atomic outputs: everything is written to a temporary name beside its final name and renamed only
when complete, so a killed or failed stage never leaves a partial file that looks finished."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(final: Path) -> None:
    """Delete `.<name>.tmp-<pid>` / `.<name>.old-<pid>` left beside `final` by a writer that was killed
    (SIGKILL, OOM, power) before its rename: otherwise every crash leaves a partial copy on disk for good.
    An `.old-<pid>` with no `final` beside it is the previous good copy of a writer killed between its two
    renames (replace_dir): it is put back, not deleted."""
    for kind in ("tmp", "old"):
        for stale in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*"):
            suffix = stale.name.rsplit("-", 1)[1]
            if not suffix.isdigit() or int(suffix) == os.getpid() or pid_alive(int(suffix)):
                continue
            if kind == "old" and not final.exists() and not final.is_symlink():
                os.replace(stale, final)
            elif stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; rename it to `final` on success, delete it on any error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = _tmp_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `final` (whole), on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = _tmp_name(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` under the name `final`. An existing `final` is renamed aside first
    and deleted only after the new one is in place (a directory cannot be replaced by one rename)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def write_text_atomic(final: str | Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
