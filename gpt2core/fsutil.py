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

from gpt2core.errors import DiskFullError, WikiGPTError, disk_full


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (field 22 of /proc/<pid>/stat), None where unknown: tells a reused pid from
    the original (pids wrap at 32,768 on many hosts)."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _writer_tag() -> str:
    """This process as a temporary name records it: `<pid>.<start time>` (`<pid>` where /proc is absent)."""
    pid = os.getpid()
    start = process_start_time(pid)
    return f"{pid}.{start}" if start else str(pid)


def process_running(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` (started at `start`, when given) still runs on this host. A zombie (killed, not
    yet reaped) does not: it can write nothing more. A live pid started at another time is another process."""
    if not pid_alive(pid):
        return False
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the pid alone
    return fields[0] not in ("Z", "X") and (not start or fields[19] == start)


def _writer_alive(tag: str) -> bool:
    """Whether the writer a temporary's tag names may still run (a tag that is not one of ours: yes, keep it)."""
    pid, _, start = tag.partition(".")
    if not pid.isdigit() or (start and not start.isdigit()):
        return True
    return process_running(int(pid), start or None)


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{_writer_tag()}")


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
    """Delete `.<name>.tmp-<tag>` / `.<name>.old-<tag>` left beside `final` by a writer that was killed
    (SIGKILL, OOM, power) before its rename: otherwise every crash leaves a partial copy on disk for good.
    The tag is the writer's pid and start time, so a live process that reused a dead writer's pid does not
    keep its leftovers (tags of just a pid, from older versions, go by the pid alone). An `.old-<tag>` with
    no `final` beside it is the previous good copy of a writer killed between its two renames
    (replace_dir): it is put back, not deleted."""
    mine = _writer_tag()
    for kind in ("tmp", "old"):
        for stale in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*"):
            tag = stale.name.rsplit("-", 1)[1]
            if tag == mine or _writer_alive(tag):
                continue
            if kind == "old" and not final.exists() and not final.is_symlink():
                os.replace(stale, final)
            elif stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_full_disk(final: Path) -> Iterator[None]:
    """A full disk while an output is written becomes one line naming that output (the OSError of a plain
    write() carries no file name; torch's checkpoint writer wraps it in a BaseException)."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001
        full = disk_full(exc)
        if full is None:
            raise
        raise DiskFullError(full, final) from None


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; rename it to `final` on success, delete it on any error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = _tmp_name(final)
    try:
        with naming_full_disk(final):
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
    with naming_full_disk(final):
        tmp.mkdir()
    try:
        with naming_full_disk(final):
            yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` under the name `final`. An existing `final` is renamed aside first
    and deleted only after the new one is in place (a directory cannot be replaced by one rename)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{_writer_tag()}")
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


def read_limited(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, refused in one line when longer than `limit`: for files whose size decides a
    process's memory (a 150 MB tokenizer.json took a process to 22.9 GB), checked before they are read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise WikiGPTError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise WikiGPTError(f"{path}: larger than {limit} bytes, too large for {what}")
    return data
