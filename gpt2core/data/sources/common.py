"""Shared pieces of the source readers: opening compressed files, numbered lines, writing extract output."""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zst_lines(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a zstd file (one or more frames); a frame cut short is an error, not a quiet end."""
    try:
        import zstandard
    except ImportError:
        raise WikiGPTError(f"{path}: a .zst file needs the zstandard package (pip install zstandard)") from None
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    pending = b""
    fed = False
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            while block:
                try:
                    out = dobj.decompress(block)
                except zstandard.ZstdError as exc:
                    raise OSError(f"corrupt zstd data: {exc}") from None
                fed = True
                block = dobj.unused_data if dobj.eof else b""
                if dobj.eof:
                    dobj, fed = dctx.decompressobj(), False
                pending += out
                *lines, pending = pending.split(b"\n")
                yield from (ln + b"\n" for ln in lines)
    if fed:
        raise OSError("zstd stream ends inside a frame (truncated file)")
    if pending:
        yield pending


def open_lines(path: Path) -> Iterator[bytes]:
    """Lines of `path`, decompressed by its magic bytes (gzip, zstd, bzip2) or read as they are."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == ZSTD_MAGIC:
        yield from _zst_lines(path)
        return
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic[:3] == b"BZh" else open
    with opener(path, "rb") as fh:
        yield from fh


def json_lines(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) for every non-blank line; bad bytes or JSON name the file and line."""
    path = Path(path)
    lineno = 0
    try:
        for lineno, raw in enumerate(open_lines(path), 1):
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
