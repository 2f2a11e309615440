"""Is the state on disk what we wrote? Two checks a long run needs after a crash, a full disk or a bad copy.

1. Checksums of a directory (a step checkpoint): `write_checksums(tmp)` inside the atomic directory before it
   is renamed, `verify_checksums(dir)` before loading. A truncated, bit-flipped, missing or extra file is
   named in one line. `newest_intact(candidates, warn)` picks the newest checkpoint that verifies, warning
   about each newer damaged one, and stops with a clear error when none does.
2. Stale Snakemake locks: Snakemake's lock files under .snakemake/locks/ hold no process id, so a Snakemake
   killed with SIGKILL leaves them behind and the next plain run refuses to start. `record_lock_owner()`
   (from the workflow's `onstart:`, i.e. after the lock is taken) notes who holds the lock;
   `clear_stale_locks()` (when the workflow is parsed, before Snakemake checks its lock) removes the lock
   only when that owner is provably dead on this host. A live run's lock is never touched, so a second
   Snakemake on the same directory is still refused.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import process_running, process_start_time, sha256_file, write_text_atomic
from gpt2core.training.run_lock import GRACE_S, lock_holder

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


# ---- stale Snakemake locks ------------------------------------------------------------------------------
OWNER = "wikigpt-lock-owner.json"


def record_lock_owner(snakemake_dir: str | Path = ".snakemake") -> None:
    """Note this process (host, pid, start time) as the holder of the lock just taken."""
    pid = os.getpid()
    owner = {"host": socket.gethostname(), "pid": pid, "start": process_start_time(pid)}
    write_text_atomic(Path(snakemake_dir) / OWNER, json.dumps(owner) + "\n")


def clear_stale_locks(snakemake_dir: str | Path = ".snakemake",
                      warn: Callable[[str], None] = print, runs: Iterable[str | Path] = (),
                      grace_s: float = GRACE_S) -> bool:
    """Remove .snakemake/locks/* when the recorded owner is gone from this host; True if removed.
    Unknown owner, another host, a live owner, or locks newer than the owner record: leave them for
    Snakemake to refuse on (its message says `snakemake --unlock`). So is a dead owner whose trainer still
    runs on one of `runs` (checkpoint directories) after `grace_s`: SIGKILL to Snakemake alone leaves its
    jobs running. The grace is for a `kill -9` of the whole group: torchrun's workers run in their own
    session and die only when the kernel tells them their launcher died, moments after it."""
    snakemake_dir = Path(snakemake_dir)
    locks = snakemake_dir / "locks"
    lock_files = sorted(p for p in locks.glob("*.lock") if p.is_file()) if locks.is_dir() else []
    if not lock_files:
        return False
    owner_file = snakemake_dir / OWNER
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
        recorded = owner_file.stat().st_mtime_ns
        newest_lock = max(p.stat().st_mtime_ns for p in lock_files)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid == os.getpid() or newest_lock > recorded:
        return False  # another host, or locks taken after the owner was noted (a run not yet at onstart)
    if process_running(pid, start):
        return False
    for run in runs:
        trainer = lock_holder(run, grace_s)
        if trainer is not None:
            warn(f"warning: the Snakemake that locked {locks} (pid {pid}) was killed, but its trainer (pid "
                 f"{trainer}) still trains {run}: wait for it to end or stop it, then rerun")
            return False
    for lock in lock_files:
        lock.unlink(missing_ok=True)
    (snakemake_dir / OWNER).unlink(missing_ok=True)
    warn(f"warning: removed a stale Snakemake lock in {locks} (its Snakemake, pid {pid}, was killed)")
    return True


# ---- pickled DCP metadata -------------------------------------------------------------------------------
# torch.distributed.checkpoint reads a sharded checkpoint's `.metadata` with plain pickle.load, which runs
# any code the file names. `load_dcp_metadata` unpickles it with only the classes DCP itself writes there
# (found by recording what a real save names), so a hostile file is refused unread; every DCP read of ours
# goes through gpt2core.training.dcp_read, whose reader uses it instead of pickle.load.
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
