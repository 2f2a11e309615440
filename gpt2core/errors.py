"""One exception type for problems the user can fix (bad input, bad config), and a runner that turns
it into the one-line message and non-zero exit that every stage promises."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WikiGPTError(Exception):
    """A user-facing error: its message is one line naming the file (and line or page) at fault."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> OSError | None:
    """The "no space left" OSError behind `exc`: itself, its cause or context, a rank's failure inside a
    torch.distributed.checkpoint CheckpointException (a BaseException that carries them in `failures`), or
    a library's own error whose message quotes the OS's (safetensors, pyarrow)."""
    todo, seen, quoted = [exc], set(), None
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return err
        code = next((c for c in DISK_FULL if os.strerror(c) in str(err)), None)
        if quoted is None and code is not None:  # wrapped by safetensors, pyarrow, ...
            quoted = OSError(code, os.strerror(code), getattr(err, "filename", None))
        todo += [err.__cause__, err.__context__]
        failures = getattr(err, "failures", None)
        if isinstance(failures, dict):
            todo += [f[0] if isinstance(f, tuple) else f for f in failures.values()
                     if isinstance(f, (tuple, BaseException))]
    return quoted


class DiskFullError(WikiGPTError, OSError):
    """A full disk, said in one line naming the file (a WikiGPTError), and still the OSError it was (errno
    ENOSPC or EDQUOT, its file name): callers that handle the OSError keep working."""

    def __init__(self, err: OSError, path: str | Path | None = None) -> None:
        code = err.errno or errno.ENOSPC
        OSError.__init__(self, code, err.strerror or os.strerror(code), err.filename)
        self.message = disk_full_message(err, path)

    def __str__(self) -> str:
        return self.message


def disk_full_message(err: OSError, path: str | Path | None = None) -> str:
    """One line naming the file that could not be written: `path` (an output being written) where given,
    else the OSError's own file name."""
    where = path if path is not None else err.filename
    return (f"{os.fsdecode(where) if where is not None else 'an output file'}: "
            f"{os.strerror(err.errno or errno.ENOSPC).lower()}; free space and rerun (finished outputs are kept)")


def run_cli(fn: Callable[[], T], log_path: str | Path | None = None) -> T:
    """Run `fn`; on WikiGPTError print `error: <message>` to stderr (and the log) and exit 1.

    A full disk anywhere below (an OSError ENOSPC/EDQUOT, however wrapped) is reported the same way, naming
    the file. Other exceptions keep their traceback: they are bugs, not user errors.
    """
    try:
        return fn()
    except WikiGPTError as exc:
        _fail(str(exc), log_path)
    except BaseException as exc:  # noqa: BLE001 (DCP's CheckpointException is a BaseException)
        full = disk_full(exc)
        if full is None:
            raise
        _fail(disk_full_message(full), log_path)


def _fail(message: str, log_path: str | Path | None) -> None:
    line = f"error: {' '.join(message.split())}"
    if log_path is not None:
        try:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
        except OSError:
            pass  # the log may sit on the disk that is full: stderr still gets the line
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(1) from None
