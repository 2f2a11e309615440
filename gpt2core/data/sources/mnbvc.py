"""kind: mnbvc: the MNBVC corpus's common text format, one file record a line.

A record is {"文件名", "是否重复文件", ..., "段落": [{"行号", "是否重复", "是否跨文件重复", "md5", "内容"}, ...]}.
The document is its paragraphs' `内容` joined by newlines in `行号` order, leaving out every paragraph
flagged `是否重复` (a duplicate within the corpus); a record flagged `是否重复文件` is dropped whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gpt2core.data.sources.common import json_lines
from gpt2core.errors import WikiGPTError

PARAGRAPHS = "段落"
LINE = "行号"
CONTENT = "内容"
DUPLICATE = "是否重复"
DUPLICATE_FILE = "是否重复文件"
FILE_NAME = "文件名"


def _paragraphs(path: str | Path, lineno: int, items: object) -> list[tuple[int, str, bool]]:
    if not isinstance(items, list):
        raise WikiGPTError(f"{path}:{lineno}: MNBVC record's {PARAGRAPHS} is not a list")
    out = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get(CONTENT), str) \
                or not isinstance(item.get(LINE), int) or isinstance(item.get(LINE), bool):
            raise WikiGPTError(f"{path}:{lineno}: MNBVC {PARAGRAPHS}[{k}] lacks an integer {LINE} "
                               f"and a string {CONTENT}")
        out.append((item[LINE], item[CONTENT], bool(item.get(DUPLICATE, False))))
    return out


def mnbvc_documents(path: str | Path, part: str, counts: dict | None = None) -> Iterator[dict]:
    """Documents of one MNBVC JSON-lines file; a record without `段落` names the file and line."""
    counts = counts if counts is not None else {}
    for key in ("records", "duplicate_files", "paragraphs", "duplicate_paragraphs"):
        counts.setdefault(key, 0)
    for lineno, record in json_lines(path):
        if not isinstance(record, dict) or PARAGRAPHS not in record:
            raise WikiGPTError(f"{path}:{lineno}: MNBVC record without {PARAGRAPHS}")
        paragraphs = _paragraphs(path, lineno, record[PARAGRAPHS])
        counts["records"] += 1
        counts["paragraphs"] += len(paragraphs)
        if record.get(DUPLICATE_FILE) is True:
            counts["duplicate_files"] += 1
            continue
        kept = sorted(((n, text) for n, text, dup in paragraphs if not dup), key=lambda p: p[0])
        counts["duplicate_paragraphs"] += len(paragraphs) - len(kept)
        name = record.get(FILE_NAME)
        title = Path(name).stem if isinstance(name, str) else ""
        yield {"id": f"{part}:{lineno}", "title": title, "url": "", "text": "\n".join(t for _, t in kept)}
