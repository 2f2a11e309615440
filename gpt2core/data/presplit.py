"""Presplit: WikiExtractor JSON lines -> one Parquet shard (id, title, url, text) with sentences split.

Shard k of n reads only its share of the corpus: every extracted file is cut into 32 KiB blocks, the
blocks of all parts are numbered in a fixed order (config order of parts, then sorted file paths) and
block g belongs to shard g mod n; a line belongs to the block its first byte lies in. The share depends
on the extracted files only, never on cores, and even a single small file spreads over several shards.
Drop counts travel in the Parquet file's metadata (key `wikigpt`) to the manifest. Chinese corpora
(`lang` zh...) take the punctuation splitter of gpt2core.data.zh, and `t2s` converts title and text to
Simplified characters before splitting (after decontamination, which matches titles as they are).
Wikipedia corpora (`clean`) first go through gpt2core.data.wikiclean; every kept document's final text is
then counted for leftover markup (gpt2core.data.markup), stored beside the drop counts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from gpt2core.data.markup import count_markup, markup_summary
from gpt2core.data.sentences import split_sentences
from gpt2core.data.wikiclean import clean_wikitext
from gpt2core.data.zh import is_chinese, split_sentences_zh, to_simplified
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path

BLOCK = 1 << 15
ROW_GROUP_BYTES = 32 << 20
SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("url", pa.string()), ("text", pa.string())])
META_KEY = b"wikigpt"


def shard_blocks(parts: list[tuple[str, str | Path]], shard: int, shards: int) -> list[tuple[Path, int, int]]:
    """(file, start, end) byte ranges shard `shard` of `shards` reads, in a fixed order."""
    mine: list[tuple[Path, int, int]] = []
    g = 0
    for _name, root in parts:
        root = Path(root)
        for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            size = f.stat().st_size
            for start in range(0, size, BLOCK):
                if g % shards == shard:
                    mine.append((f, start, min(start + BLOCK, size)))
                g += 1
    return mine


def _line_number(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1


def _first_line_start(fh: BinaryIO, start: int, end: int) -> int | None:
    """Offset of the first line that begins in [start, end), or None. Reads at most the block itself, so a
    line of 50 MB costs one read of it, not one per 32 KiB block it spans (that was quadratic)."""
    if start == 0:
        return 0
    fh.seek(start - 1)
    pos = start - 1
    while pos < end - 1:
        chunk = fh.read(min(BLOCK, end - 1 - pos))
        if not chunk:
            return None
        hit = chunk.find(b"\n")
        if hit >= 0:
            return pos + hit + 1
        pos += len(chunk)
    return None


def read_block(path: Path, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every line whose first byte lies in [start, end)."""
    with open(path, "rb") as fh:
        pos = _first_line_start(fh, start, end)
        if pos is None:
            return
        fh.seek(pos)
        while pos < end:
            line = fh.readline()
            if not line:
                break
            yield pos, line
            pos += len(line)


def parse_line(path: Path, offset: int, line: bytes) -> dict | None:
    """One JSON article; bad UTF-8, bad JSON or a missing key is an error naming file and line."""
    if not line.strip():
        return None
    try:
        doc = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WikiGPTError(f"{path}:{_line_number(path, offset)}: invalid UTF-8 ({exc.reason} at byte "
                           f"{exc.start})") from None
    except json.JSONDecodeError as exc:
        raise WikiGPTError(f"{path}:{_line_number(path, offset)}: malformed JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), str) for k in ("id", "title", "text")):
        raise WikiGPTError(f"{path}:{_line_number(path, offset)}: not an article object with string "
                           f"id, title and text")
    return doc


def read_titles(files: list[str | Path]) -> set[str]:
    titles: set[str] = set()
    for f in files:
        try:
            titles.update(t.strip() for t in Path(f).read_text(encoding="utf-8").splitlines() if t.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise WikiGPTError(f"{f}: cannot read title list ({exc})") from None
    return titles


def presplit_shard(parts: list[tuple[str, str | Path]], out: str | Path, shard: int, shards: int,
                   split: bool = True, min_chars: int = 0, titles_files: list[str | Path] = (),
                   lang: str = "en", t2s: bool = False, clean: bool = False) -> dict:
    """Write shard `shard` of the corpus made of `parts` ((name, extract dir) pairs) to `out`."""
    splitter = split_sentences_zh if is_chinese(lang) else split_sentences
    titles = read_titles(list(titles_files))
    dropped: Counter[str] = Counter()
    cleaned: Counter[str] = Counter()
    markup: Counter[str] = Counter()
    kept = seen = 0
    rows: dict[str, list[str]] = {k: [] for k in SCHEMA.names}
    pending = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")

        def flush() -> None:
            if rows["id"]:
                writer.write_table(pa.table(rows, schema=SCHEMA))
                for v in rows.values():
                    v.clear()

        for path, start, end in shard_blocks(parts, shard, shards):
            for offset, line in read_block(path, start, end):
                doc = parse_line(path, offset, line)
                if doc is None:
                    continue
                seen += 1
                text = doc["text"]
                if clean:
                    text = clean_wikitext(text, cleaned)
                if not text.strip():
                    dropped["empty"] += 1
                    continue
                if doc["title"].strip() in titles:
                    dropped["decontaminated"] += 1
                    continue
                if len(text) < min_chars:
                    dropped["short"] += 1
                    continue
                title = doc["title"]
                if t2s:
                    text, title = to_simplified(text), to_simplified(title)
                text = splitter(text) if split else text
                count_markup(text, markup)
                rows["id"].append(doc["id"])
                rows["title"].append(title)
                rows["url"].append(doc.get("url") or "")
                rows["text"].append(text)
                kept += 1
                pending += len(text)
                if pending >= ROW_GROUP_BYTES:
                    flush()
                    pending = 0
        flush()
        stats = {"shard": shard, "shards": shards, "articles": seen, "documents": kept,
                 "dropped": dict(sorted(dropped.items())), "cleaned": dict(sorted(cleaned.items())),
                 "markup": markup_summary(markup)}
        writer.add_key_value_metadata({META_KEY: json.dumps(stats).encode()})
        writer.close()
    return stats


def shard_stats(parquet: str | Path) -> dict:
    """The counts presplit stored in a shard's metadata."""
    meta = pq.read_metadata(parquet).metadata or {}
    if META_KEY not in meta:
        raise WikiGPTError(f"{parquet}: not a presplit shard (no {META_KEY.decode()} metadata)")
    return json.loads(meta[META_KEY])
