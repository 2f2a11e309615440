"""Reading a torch.distributed.checkpoint (DCP) directory without running code from it.

Why: DCP stores every non-tensor entry of a state dict (the optimizer's `param_groups`: lr, betas, eps, ...)
as a pickle inside the `.distcp` shard files, and its DefaultLoadPlanner reads those bytes with
`torch.load(weights_only=False)`: a checkpoint could run any code on every rank that resumes it (the
checksums cannot stop that: whoever can write the checkpoint can rewrite them). `WeightsOnlyLoadPlanner`
reads those items with `torch.load(weights_only=True)` (plain data and tensors only) and refuses anything
else in one line naming the shard file. Tensors DCP already reads with weights_only=True. Its `.metadata`,
which DCP reads with plain pickle.load, `RestrictedFileSystemReader` reads with gpt2core.training.checkpoint.integrity's
restricted unpickler instead (DCP's own classes only), refusing shard files named outside the directory.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

from gpt2core.errors import WikiGPTError
from gpt2core.training.checkpoint.integrity import IntegrityError, load_dcp_metadata


class UnsafeCheckpointItem(WikiGPTError):
    """A non-tensor DCP item whose pickle names something other than plain data."""


def _why(exc: BaseException) -> str:
    """The one fact worth a line from torch's weights_only refusal (several paragraphs long)."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, not plain data"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


class RestrictedFileSystemReader(FileSystemReader):
    """FileSystemReader whose `.metadata` is unpickled with only DCP's own classes (not pickle.load) and
    whose shard files must lie in the checkpoint directory itself (a plain file name, no `/` or `..`)."""

    refused: IntegrityError | None = None  # kept: DCP turns a failed metadata read into an AssertionError

    def read_metadata(self, *args: object, **kwargs: object) -> Metadata:
        try:
            return self._read_metadata(Path(self._get_metadata_path(kwargs.get("rank"))))
        except IntegrityError as exc:
            self.refused = self.refused or exc  # the first: DCP then tries a per-rank file we never write
            raise

    def _read_metadata(self, path: Path) -> Metadata:
        metadata = load_dcp_metadata(path)
        if not isinstance(metadata, Metadata):
            raise IntegrityError(f"{path}: not DCP checkpoint metadata ({type(metadata).__name__})")
        for info in (metadata.storage_data or {}).values():
            name = getattr(info, "relative_path", None)
            if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
                raise IntegrityError(f"{path}: names shard file {name!r} outside its directory")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def read_metadata(directory: str | Path) -> Metadata:
    """A DCP directory's metadata, read as RestrictedFileSystemReader reads it."""
    return RestrictedFileSystemReader(str(directory)).read_metadata()


class WeightsOnlyLoadPlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner whose non-tensor items are unpickled with `torch.load(weights_only=True)`."""

    def __init__(self, directory: str | Path, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.directory = Path(directory)

    def _file_of(self, read_item: ReadItem) -> Path:
        storage = getattr(self.metadata, "storage_data", None) or {}
        info = storage.get(read_item.storage_index)
        return self.directory / info.relative_path if info is not None else self.directory

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise UnsafeCheckpointItem(f"{self._file_of(read_item)}: refusing to unpickle item {fqn} "
                                       f"({_why(exc)}); a checkpoint holds only tensors and plain values "
                                       "there") from None
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def reason(exc: BaseException) -> str:
    """DCP wraps the cause in a multi-line traceback per rank: keep its last line (e.g. the missing file)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def safe_load(state: dict, directory: str | Path, what: str = "load", **kwargs: object) -> None:
    """`dcp.load(state)` from `directory` through WeightsOnlyLoadPlanner; every failure is one
    WikiGPTError: our own refusals as themselves (whichever rank met them), anything else naming `directory`."""
    directory = Path(directory)
    reader = RestrictedFileSystemReader(str(directory))
    try:
        dcp.load(state, checkpoint_id=str(directory), planner=WeightsOnlyLoadPlanner(directory),
                 storage_reader=reader, **kwargs)
    except WikiGPTError:
        raise
    except (Exception, CheckpointException) as exc:  # CheckpointException (a BaseException): every rank's
        if reader.refused is not None:
            raise IntegrityError(str(reader.refused)) from None
        for failure, _trace in getattr(exc, "failures", {}).values():
            if isinstance(failure, WikiGPTError):  # our own refusal (a planted item, hostile metadata)
                raise type(failure)(str(failure)) from None
        raise WikiGPTError(f"{directory}: cannot {what} sharded checkpoint ({reason(exc)})") from None
