"""Checkpoint files written so that a failed write (a full disk) surfaces as the OSError it is.

Why: the libraries hide it. On a full disk `torch.save` to a path raises RuntimeError ("basic_ios::clear:
iostream error", "unexpected pos 704 vs 598"), safetensors' save_file a SafetensorError, and DCP wraps the
OSError in a CheckpointException (a BaseException) holding every rank's traceback. Written through these
helpers the OSError itself (errno ENOSPC, with the file's path) reaches the caller, which the CLI reports
in one line; the atomic directory around the save removes what was written.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch.distributed.checkpoint.api import CheckpointException


class _KeepingWriter(io.RawIOBase):
    """A write-only file for torch.save that remembers the OSError a write raised."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self.raw, self.error = raw, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += self.raw.write(view[done:])
        except OSError as exc:
            self.error = exc
            raise
        return done


def _with_path(exc: OSError, path: Path) -> OSError:
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def torch_save(obj: object, path: str | Path) -> None:
    """torch.save(obj, path); a failed write raises its OSError (naming `path`), not torch's RuntimeError."""
    path = Path(path)
    with open(path, "wb", buffering=0) as raw:
        writer = _KeepingWriter(raw)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise _with_path(writer.error, path) from None
            raise


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """safetensors' file format written by Python, so a failed write is an OSError naming `path`."""
    path = Path(path)
    data = safetensors_bytes(tensors)
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise _with_path(exc, path) from None


def reraise_os_error(exc: CheckpointException) -> None:
    """DCP's wrapped failure: raise the first rank's OSError itself when there is one (else return)."""
    for failure, _trace in exc.failures.values():
        if isinstance(failure, OSError):
            raise failure from None
