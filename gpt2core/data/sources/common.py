"""Shared pieces of the source readers: opening compressed files, numbered lines, writing extract output."""

from __future__ import annotations

import bz2
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_binary(path: Path):
    """A binary reader of `path`, decompressed by its magic bytes (gzip, zstd, bzip2) or as is."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise WikiGPTError(f"{path}: a .zst file needs the zstandard package (pip install zstandard)") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb")


def json_lines(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) for every non-blank line; bad bytes or JSON name the file and line."""
    path = Path(path)
    lineno = 0
    try:
        with open_binary(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield lineno, json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise WikiGPTError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
                except json.JSONDecodeError as exc:
                    raise WikiGPTError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
    except (OSError, EOFError) as exc:
        raise WikiGPTError(f"{path}: corrupt or truncated file after line {lineno} ({exc})") from None
    except Exception as exc:  # zstandard.ZstdError has no importable base we can name here
        if type(exc).__name__ == "ZstdError":
            raise WikiGPTError(f"{path}: corrupt zstd data after line {lineno} ({exc})") from None
        raise


def write_documents(docs: Iterator[dict], outdir: str | Path, source: str | Path, counts: dict) -> dict:
    """Write documents as WikiExtractor-style JSON lines into `outdir`/AA/wiki_00 (atomically)."""
    written = nonempty = 0
    with atomic_dir(outdir) as tmp:
        (tmp / "AA").mkdir()
        with open(tmp / "AA" / "wiki_00", "w", encoding="utf-8") as out:
            for doc in docs:
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                written += 1
                nonempty += bool(doc["text"].strip())
        if nonempty == 0:
            raise WikiGPTError(f"{source}: yielded zero documents with text")
    return {**counts, "documents": written, "nonempty": nonempty}
