"""Shared pieces of the source readers: opening compressed files, numbered lines, writing extract output."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # in JSON bytes, the one way to a lone surrogate
# One record (a JSON line) at most: a longer one is an error, read no further. Also presplit's default for
# an extracted article (config limits.max_line_bytes).
MAX_LINE_BYTES = 256 << 20


def _zst_lines(path: Path, chunk: int = 1 << 20, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines of a zstd file (one or more frames); a frame cut short is an error, not a quiet end. A line
    past `max_line_bytes` is yielded as it stands and the reading stops (the caller refuses it)."""
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
                if len(pending) > max_line_bytes:
                    yield pending
                    return
    if fed:
        raise OSError("zstd stream ends inside a frame (truncated file)")
    if pending:
        yield pending


def open_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines of `path`, decompressed by its magic bytes (gzip, zstd, bzip2) or read as they are; none is
    read past `max_line_bytes` + 1 bytes (a longer one comes cut there, for the caller to refuse)."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == ZSTD_MAGIC:
        yield from _zst_lines(path, max_line_bytes=max_line_bytes)
        return
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic[:3] == b"BZh" else open
    with opener(path, "rb") as fh:
        while line := fh.readline(max_line_bytes + 1):
            yield line
            if len(line) > max_line_bytes:
                return


def json_lines(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) for every non-blank line; bad bytes or JSON, a line past `max_line_bytes`,
    nesting deeper than Python's stack and a lone surrogate escape (`"\\ud800"`, which no UTF-8 file can
    hold) name the file and line."""
    path = Path(path)
    lineno = 0
    try:
        for lineno, raw in enumerate(open_lines(path, max_line_bytes), 1):
            if len(raw) > max_line_bytes:
                raise WikiGPTError(f"{path}:{lineno}: a line longer than {max_line_bytes} bytes")
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                if SURROGATE_ESCAPE.search(raw):  # only such escapes make a lone surrogate: check those lines
                    json.dumps(record, ensure_ascii=False).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise WikiGPTError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise WikiGPTError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            except RecursionError:
                raise WikiGPTError(f"{path}:{lineno}: JSON nested too deeply") from None
            except UnicodeEncodeError:
                raise WikiGPTError(f"{path}:{lineno}: a lone surrogate escape (\\ud800-\\udfff): not valid "
                                   "Unicode") from None
            yield lineno, record
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
