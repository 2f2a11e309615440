"""Is a checkpoint on disk what we wrote? Checksums of its files, and the allow-list for DCP's pickled metadata.

1. Checksums of a directory (a step checkpoint): `write_checksums(tmp)` inside the atomic directory before it
   is renamed, `verify_checksums(dir)` before loading. A truncated, bit-flipped, missing or extra file is
   named in one line. `newest_intact(candidates, warn)` picks the newest checkpoint that verifies, warning
   about each newer damaged one, and stops with a clear error when none does.
2. DCP metadata: `load_dcp_metadata` unpickles a sharded checkpoint's `.metadata` with only DCP's classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import sha256_file, write_text_atomic

CHECKSUMS = "checksums.json"
FORMAT = 1


class IntegrityError(WikiGPTError):
    """A directory's files differ from the checksums written with them (or those checksums are gone)."""


def _files(directory: Path) -> list[str]:
    """Every regular file below `directory` (relative POSIX paths, sorted), the checksum file excluded."""
    found = [p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()]
    return sorted(name for name in found if name != CHECKSUMS)


def write_checksums(directory: str | Path) -> Path:
    """Record size and sha256 of every file in `directory`; call it on the temporary directory, last."""
    directory = Path(directory)
    entries = {name: {"size": (directory / name).stat().st_size, "sha256": sha256_file(directory / name)}
               for name in _files(directory)}
    path = directory / CHECKSUMS
    write_text_atomic(path, json.dumps({"format": FORMAT, "files": entries}, indent=1, sort_keys=True) + "\n")
    return path


def verify_checksums(directory: str | Path) -> None:
    """Raise IntegrityError naming the first file that is missing, extra, truncated or altered."""
    directory = Path(directory)
    path = directory / CHECKSUMS
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        entries = record["files"]
        if record.get("format") != FORMAT or not isinstance(entries, dict):
            raise ValueError(f"format {record.get('format')!r}")
    except FileNotFoundError:
        raise IntegrityError(f"{path}: missing, so {directory} cannot be verified") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{path}: unreadable checksum file ({exc})") from None
    present = set(_files(directory))
    for name in sorted(entries):
        file = directory / name
        if name not in present:
            raise IntegrityError(f"{file}: missing (listed in {path})")
        size = file.stat().st_size
        if size != entries[name].get("size"):
            raise IntegrityError(f"{file}: {size} bytes, {entries[name].get('size')} were written (truncated "
                                 "or altered)")
        if sha256_file(file) != entries[name].get("sha256"):
            raise IntegrityError(f"{file}: sha256 differs from {path} (corrupted)")
    extra = sorted(present - set(entries))
    if extra:
        raise IntegrityError(f"{directory / extra[0]}: not listed in {path} (written after the checkpoint)")


def newest_intact(candidates: Iterable[str | Path], warn: Callable[[str], None]) -> Path | None:
    """The newest of `candidates` (given oldest first) that verifies; `warn` hears about each damaged
    newer one. None when there are no candidates; IntegrityError when there are some and none verifies."""
    ordered = [Path(c) for c in candidates]
    problems: list[str] = []
    for ckpt in reversed(ordered):
        try:
            verify_checksums(ckpt)
        except IntegrityError as exc:
            problems.append(str(exc))
            warn(f"warning: {exc}; skipping {ckpt.name}")
            continue
        if problems:
            warn(f"warning: falling back to {ckpt} (the newest intact checkpoint)")
        return ckpt
    if ordered:
        raise IntegrityError(f"no intact checkpoint in {ordered[-1].parent}: {problems[0]} "
                             f"(and {len(problems) - 1} older ones damaged); remove the directory to start over")
    return None


# ---- pickled DCP metadata -------------------------------------------------------------------------------
# torch.distributed.checkpoint reads a sharded checkpoint's `.metadata` with plain pickle.load, which runs
# any code the file names. `load_dcp_metadata` unpickles it with only the classes DCP itself writes there
# (found by recording what a real save names), so a hostile file is refused unread; every DCP read of ours
# goes through gpt2core.training.checkpoint.dcp_read, whose reader uses it instead of pickle.load.
_DCP_ALLOWED = {
    "torch.distributed.checkpoint.metadata": None,  # None: any class defined in the module
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


def check_dcp_metadata(path: str | Path) -> None:
    """Raise IntegrityError unless `path` (a DCP `.metadata`) unpickles using only DCP's own classes."""
    load_dcp_metadata(path)


def load_dcp_metadata(path: str | Path) -> object:
    """`path` (a DCP `.metadata`) unpickled with only DCP's own classes allowed; IntegrityError otherwise."""
    import enum
    import io
    import pickle

    import torch

    path = Path(path)

    def enum_member(cls: object, name: str) -> object:
        # Some Pythons (3.11.2, 3.12+) pickle an enum member as getattr(EnumClass, "NAME"): allow exactly that,
        # for enums DCP's allowed modules define, and nothing else getattr could reach.
        if (isinstance(cls, type) and issubclass(cls, enum.Enum) and cls.__module__ in _DCP_ALLOWED
                and isinstance(name, str) and name in cls.__members__):
            return cls.__members__[name]
        raise IntegrityError(f"{path}: refusing to unpickle: it names getattr({cls!r}, {name!r}), which a "
                             "torch.distributed.checkpoint metadata file never holds")

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) == ("builtins", "getattr"):
                return enum_member
            allowed = _DCP_ALLOWED.get(module, set())
            obj = super().find_class(module, name) if module in _DCP_ALLOWED else None
            if module == "torch" and isinstance(obj, torch.dtype):
                return obj
            if module in _DCP_ALLOWED and (allowed is None and isinstance(obj, type) or name in (allowed or ())):
                return obj
            raise IntegrityError(f"{path}: refusing to unpickle: it names {module}.{name}, which a "
                                 "torch.distributed.checkpoint metadata file never holds")

    try:
        return _Restricted(io.BytesIO(path.read_bytes())).load()
    except IntegrityError:
        raise
    except Exception as exc:  # any malformed pickle: truncated, bad opcode, wrong types
        raise IntegrityError(f"{path}: unreadable checkpoint metadata ({type(exc).__name__}: {exc})") from None
