"""Are the token shards the ones the manifest lists? Checked before training reads any of them.

Why: `gather` records each shard's size (its token count) and sha256 in results/data/manifest.json, but a
shard changed afterwards (a rerun of one tokenize job by hand, a bad copy, a disk error) or a manifest
pointing at another file would otherwise train silently on other data. Checked at every start:
- every listed shard lies inside the working directory (a manifest naming `/elsewhere/x.bin` or
  `../x.bin` is refused; symlinks inside it are the user's own and are followed);
- its size matches its token count (a stat, always);
- its sha256 matches the manifest's, hashed only when the shard's (size, mtime, ctime, inode) differ from
  the last verified ones: a cache of verified stats beside the checkpoints keeps a start on large shards
  cheap. ctime cannot be set back by a user, so changing a shard and restoring its mtime still rehashes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import sha256_file, write_text_atomic

CACHE = "verified_shards.json"
FORMAT = 1


def listed_shards(manifest: dict) -> dict[str, dict]:
    """Every shard entry of the manifest (its splits and its corpora's), one per .bin path."""
    entries: dict[str, dict] = {}
    sections = [manifest["splits"], *(c.get("splits", {}) for c in manifest.get("corpora") or [])]
    for splits in sections:
        for split in splits.values():
            for shard in split.get("shards", []):
                entries.setdefault(str(shard["bin"]), shard)
    return entries


def check_inside(name: str, workdir: Path, manifest_path: Path) -> None:
    """Refuse a shard path that leaves `workdir` (absolute elsewhere, or climbing out with `..`)."""
    root = os.path.abspath(workdir)
    full = os.path.normpath(os.path.join(root, name))
    if os.path.commonpath([root, full]) != root:
        raise WikiGPTError(f"{manifest_path}: shard {name} is outside the working directory {root}; a "
                           "manifest lists only files under it (rerun gather)")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_cache(path: Path | None) -> dict[str, dict]:
    """The verified stats, or nothing when absent or unreadable (then every shard is hashed again)."""
    if path is None:
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record["files"] if record.get("format") == FORMAT else {}
        return files if isinstance(files, dict) else {}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def verify_shards(manifest: dict, manifest_path: str | Path, itemsize: int, *, workdir: Path | None = None,
                  cache: Path | None = None, hash_changed: bool = True) -> None:
    """Raise WikiGPTError naming the first shard that is outside `workdir`, missing, of another size or
    (when `hash_changed`) of another sha256 than the manifest says. `cache` (a JSON file) remembers the
    stats of shards already hashed; it is rewritten when a shard was hashed."""
    manifest_path = Path(manifest_path)
    known = _read_cache(cache)
    verified: dict[str, dict] = {}
    hashed = False
    for name, shard in sorted(listed_shards(manifest).items()):
        if workdir is not None:
            check_inside(name, workdir, manifest_path)
        path = Path(name)
        if not path.is_file():
            raise WikiGPTError(f"{path}: token shard is missing (listed in {manifest_path})")
        stats = _stat_key(path)
        expected = int(shard["tokens"]) * itemsize
        if stats["size"] != expected:
            raise WikiGPTError(f"{path}: {stats['size']} bytes, {manifest_path} lists {shard['tokens']} tokens "
                               f"({expected} bytes): changed after gather; rerun the workflow")
        if not hash_changed:
            continue
        want = shard.get("sha256")
        if not isinstance(want, str):
            raise WikiGPTError(f"{manifest_path}: shard {name} has no sha256 (an older gather); rerun gather")
        entry = {**stats, "sha256": want}
        if known.get(name) != entry:
            hashed = True
            if sha256_file(path) != want:
                raise WikiGPTError(f"{path}: sha256 differs from {manifest_path} (changed after gather); rerun "
                                   "the workflow")
        verified[name] = entry
    if cache is not None and (hashed or verified != known):
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps({"format": FORMAT, "files": verified}, indent=1, sort_keys=True) + "\n")
