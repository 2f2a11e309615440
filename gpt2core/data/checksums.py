"""Checksums of downloaded files: inline (sha256/sha1/md5) or looked up in a Wikimedia `*sums.txt` file."""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

from gpt2core.errors import WikiGPTError

ALGORITHMS = ("sha256", "sha1", "md5")
_HEX_LEN = {64: "sha256", 40: "sha1", 32: "md5"}


def parse_sums(text: str, where: str) -> dict[str, tuple[str, str]]:
    """`<hex>  <name>` lines (sha1sum/md5sum format) -> {name: (algorithm, hex)}."""
    table: dict[str, tuple[str, str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        digest = parts[0].lower()
        algo = _HEX_LEN.get(len(digest))
        if len(parts) != 2 or algo is None or any(c not in "0123456789abcdef" for c in digest):
            raise WikiGPTError(f"{where}:{lineno}: not a checksum line: {line[:80]!r}")
        table[parts[1].lstrip("*")] = (algo, digest)
    return table


def expected_digest(source: dict, name: str, sums_text: str | None) -> tuple[str, str] | None:
    """The (algorithm, hex) a downloaded file must match, or None when the source names no checksum."""
    for algo in ALGORITHMS:
        if source.get(algo):
            return algo, source[algo].lower()
    if sums_text is None:
        return None
    table = parse_sums(sums_text, source["checksums_url"])
    if name not in table:
        raise WikiGPTError(f"{source['checksums_url']}: no checksum listed for {name}")
    return table[name]


def expand_glob(url: str, sums_text: str) -> list[str]:
    """URLs for every file in a checksum list matching the glob in `url`'s last component (sorted)."""
    base, _, pattern = url.rpartition("/")
    names = sorted(n for n in parse_sums(sums_text, "checksums") if fnmatch.fnmatchcase(n, pattern))
    return [f"{base}/{n}" if base else n for n in names]


def file_digest(path: str | Path, algo: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
