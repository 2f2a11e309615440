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
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from gpt2core.data.markup import count_markup, markup_summary
from gpt2core.data.sentences import MAX_PARAGRAPH_CHARS, PIECE_CHARS, split_pieces, split_sentences
from gpt2core.data.sources.common import MAX_LINE_BYTES, SURROGATE_ESCAPE
from gpt2core.data.wikiclean import clean_wikitext
from gpt2core.data.zh import is_chinese, split_sentences_zh, to_simplified
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path

BLOCK = 1 << 15
_SURROGATE = re.compile("[\ud800-\udfff]")
ROW_GROUP_BYTES = 32 << 20
SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("url", pa.string()), ("text", pa.string())])
META_KEY = b"wikigpt"
# Column statistics (min/max) of `text` cost two copies of a row group's largest text while writing (1.4 GB
# for one 200 MB page) and were never stored (Parquet drops min/max over 4 KB): not computed at all. Nor is
# a dictionary for `text` (texts do not repeat), which cost every reader one more copy of its largest text.
STATISTICS = DICTIONARY = ["id", "title", "url"]


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
    """1-based number of the line at byte `offset` (counted block by block: the file may be huge)."""
    lines = 1
    with open(path, "rb") as fh:
        while offset > 0 and (block := fh.read(min(offset, 1 << 20))):
            lines += block.count(b"\n")
            offset -= len(block)
    return lines


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


def read_block(path: Path, start: int, end: int, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every line whose first byte lies in [start, end). A line longer than
    `max_line_bytes` is an error naming it, read no further than that (a 2 GiB line cost 2 GiB)."""
    with open(path, "rb") as fh:
        pos = _first_line_start(fh, start, end)
        if pos is None:
            return
        fh.seek(pos)
        while pos < end:
            line = fh.readline(max_line_bytes + 1)
            if not line:
                break
            if len(line) > max_line_bytes:
                raise WikiGPTError(f"{path}:{_line_number(path, pos)}: a line longer than {max_line_bytes} bytes "
                                   f"(limits.max_line_bytes): one article that large is not text to train on")
            pos, held = pos + len(line), [line]
            del line  # while the caller works on a 200 MB line, this frame must not hold a second reference
            yield pos - len(held[0]), held.pop()


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
    except RecursionError:
        raise WikiGPTError(f"{path}:{_line_number(path, offset)}: JSON nested too deeply") from None
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), str) for k in ("id", "title", "text")):
        raise WikiGPTError(f"{path}:{_line_number(path, offset)}: not an article object with string "
                           f"id, title and text")
    if SURROGATE_ESCAPE.search(line):  # a lone surrogate comes only from a \\udXXX escape: check those lines
        for key in ("id", "title", "url", "text"):
            if isinstance(doc.get(key), str) and _SURROGATE.search(doc[key]):
                raise WikiGPTError(f"{path}:{_line_number(path, offset)}: {key} holds a lone surrogate escape "
                                   f"(\\ud800-\\udfff): not valid Unicode")
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
                   lang: str = "en", t2s: bool = False, max_line_bytes: int = MAX_LINE_BYTES,
                   max_paragraph_chars: int = MAX_PARAGRAPH_CHARS, clean: bool = False) -> dict:
    """Write shard `shard` of the corpus made of `parts` ((name, extract dir) pairs) to `out`. Memory is
    bounded by `max_line_bytes` (a longer article is an error) and `max_paragraph_chars` (a longer paragraph
    is cut before the sentence splitter, counted in the stats' paragraph_cuts). `clean`: Wikipedia text
    goes through clean_wikitext first (gpt2core.data.wikiclean)."""
    cuts: Counter[str] = Counter()
    if is_chinese(lang):
        def splitter(text: str) -> str:
            return split_pieces(text, split_sentences_zh, PIECE_CHARS, max_paragraph_chars, cuts)
    else:
        def splitter(text: str) -> str:
            return split_sentences(text, max_paragraph_chars=max_paragraph_chars, cuts=cuts)
    titles = read_titles(list(titles_files))
    dropped: Counter[str] = Counter()
    cleaned: Counter[str] = Counter()
    markup: Counter[str] = Counter()
    kept = seen = 0
    rows: dict[str, list[str]] = {k: [] for k in SCHEMA.names}
    pending = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd", write_statistics=STATISTICS,
                                  use_dictionary=DICTIONARY)

        def flush() -> None:
            if rows["id"]:
                table = pa.table(rows, schema=SCHEMA)
                for v in rows.values():
                    v.clear()  # the Python strings go before the writer's buffers come
                writer.write_table(table)

        for path, start, end in shard_blocks(parts, shard, shards):
            for offset, line in read_block(path, start, end, max_line_bytes):
                doc = parse_line(path, offset, line)
                del line
                if doc is None:
                    continue
                seen += 1
                text = doc.pop("text")  # only `text` holds it: the splitter's result replaces it
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
                del text  # rows hold it until flush
                if pending >= ROW_GROUP_BYTES:
                    flush()
                    pending = 0
        flush()
        stats = {"shard": shard, "shards": shards, "articles": seen, "documents": kept,
                 "dropped": dict(sorted(dropped.items())), "paragraph_cuts": cuts["paragraph_cuts"],
                 "cleaned": dict(sorted(cleaned.items())), "markup": markup_summary(markup)}
        writer.add_key_value_metadata({META_KEY: json.dumps(stats).encode()})
        writer.close()
    return stats


def shard_stats(parquet: str | Path) -> dict:
    """The counts presplit stored in a shard's metadata."""
    meta = pq.read_metadata(parquet).metadata or {}
    if META_KEY not in meta:
        raise WikiGPTError(f"{parquet}: not a presplit shard (no {META_KEY.decode()} metadata)")
    return json.loads(meta[META_KEY])
