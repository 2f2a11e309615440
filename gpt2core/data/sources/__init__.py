"""Corpus sources other than Wikipedia dumps, turned into the extract stage's JSON lines.

Every kind ends up in the same place and format as WikiExtractor's output (`<extract dir>/AA/wiki_00`,
one `{"id", "title", "url", "text"}` object a line), so presplit, decontamination and the shard rule stay
one code path for all corpora. `extract_part` is the one entry point the extract stage calls.
"""

from __future__ import annotations

from pathlib import Path

from gpt2core.data.sources.common import write_documents
from gpt2core.data.sources.jsonl import jsonl_documents
from gpt2core.data.sources.mnbvc import mnbvc_documents

KINDS = ("wikipedia", "jsonl", "mnbvc")


def extract_part(kind: str, source: str | Path, outdir: str | Path, part: str, processes: int = 1,
                 log: str | Path | None = None, text_field: str = "text", limits: dict | None = None) -> dict:
    """Extract one downloaded source file of a corpus of `kind` into `outdir`; returns counts for the log.
    `limits` (config limits.extract_*) bound the WikiExtractor run."""
    if kind == "wikipedia":
        from gpt2core.data.extract import extract_dump
        from gpt2core.watch import Limits

        return extract_dump(source, outdir, processes, log, Limits.from_limits(limits, "extract"))
    if kind == "jsonl":
        counts: dict = {}
        return write_documents(jsonl_documents(source, part, text_field, counts), outdir, source, counts)
    if kind == "mnbvc":
        counts = {}
        return write_documents(mnbvc_documents(source, part, counts), outdir, source, counts)
    raise ValueError(f"unknown corpus kind {kind!r} (one of {', '.join(KINDS)})")


__all__ = ["KINDS", "extract_part"]
