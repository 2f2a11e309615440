"""kind: jsonl: one JSON object a line, its text under a configurable field (plain, .gz or .zst).

A document's id is `<part>:<the record's id>` when the record has a string or integer `id`, else
`<part>:<line number>`, so ids stay unique across the files of a corpus and never depend on shard counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gpt2core.data.sources.common import json_lines
from gpt2core.errors import WikiGPTError


def _field(record: dict, name: str):
    """`record[name]`, where a dotted name (`meta.text`) walks into nested objects."""
    value: object = record
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def jsonl_documents(path: str | Path, part: str, text_field: str = "text",
                    counts: dict | None = None) -> Iterator[dict]:
    """Documents of one JSON-lines file; a record without a string `text_field` names file and line."""
    counts = counts if counts is not None else {}
    counts.setdefault("records", 0)
    for lineno, record in json_lines(path):
        if not isinstance(record, dict):
            raise WikiGPTError(f"{path}:{lineno}: not a JSON object")
        text = _field(record, text_field)
        if not isinstance(text, str):
            what = "no" if text is None else f"a non-string ({type(text).__name__})"
            raise WikiGPTError(f"{path}:{lineno}: {what} text field {text_field!r}")
        rid = record.get("id")
        ident = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else str(lineno)
        title = record.get("title")
        url = record.get("url")
        counts["records"] += 1
        yield {"id": f"{part}:{ident}", "title": title if isinstance(title, str) else "",
               "url": url if isinstance(url, str) else "", "text": text}


def source_files(folder: Path) -> list[Path]:
    """The JSON-lines files of a folder source, sorted (hidden files skipped)."""
    suffixes = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".jsonl.bz2")
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.is_file() and not p.name.startswith(".") and p.name.endswith(suffixes))
    return files
