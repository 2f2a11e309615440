"""A valid and a test document for every corpus that has a handful of documents, decided by ids alone.

A document's split is a hash of (seed, id) weighted by `data.split` (gpt2core.data.shards.split_of). A small
corpus can draw no valid document (a 33-page zhwiki corpus at 949:50:1 has none) and would silently drop
out of the per-corpus validation loss. So one job per corpus reads the ids of all its presplit shards and,
for each split with a positive weight that drew no document, moves the train document with the smallest
second hash (of seed and id) there. That depends on the set of the corpus's ids only, never on the shard
count or on which shard holds a document; every tokenize job of the corpus applies the same plan. A corpus
of fewer than MIN_DOCUMENTS documents is left as drawn, with a warning (also in the manifest).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from pathlib import Path

import pyarrow.parquet as pq

from gpt2core.data.shards import SPLITS, split_bounds, split_of
from gpt2core.fsutil import write_text_atomic

MIN_DOCUMENTS = 5


def _second_hash(doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00split-guarantee\x00{doc_id}".encode(),
                                          digest_size=8).digest(), "big")


def plan_splits(parquets: list[str | Path], seed: int, split: list[float], corpus: str = "") -> dict:
    """{"documents", "drawn": {split: n}, "moved": {id: split}, "warning"} for one corpus's shards.

    Memory stays flat: ids are streamed, and only the two train documents with the smallest second hash
    are kept."""
    bounds = split_bounds(split)
    drawn = dict.fromkeys(SPLITS, 0)
    smallest: list[tuple[int, str]] = []  # max-heap of (-hash, id), at most 2 entries
    for path in parquets:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=["id"]):
            for doc_id in batch.column(0).to_pylist():
                s = split_of(doc_id, seed, bounds)
                drawn[SPLITS[s]] += 1
                if s == 0:
                    item = (-_second_hash(doc_id, seed), doc_id)
                    if len(smallest) < 2:
                        heapq.heappush(smallest, item)
                    elif item > smallest[0]:
                        heapq.heapreplace(smallest, item)
    documents = sum(drawn.values())
    wanted = [s for s, w in zip(SPLITS[1:], split[1:], strict=True) if w > 0 and drawn[s] == 0]
    moved: dict[str, str] = {}
    warning = None
    name = f"corpus {corpus}" if corpus else "corpus"
    if wanted and documents < MIN_DOCUMENTS:
        warning = (f"warning: {name}: {documents} documents, too few to guarantee a valid and a test document "
                   f"(needs {MIN_DOCUMENTS}); no {' and no '.join(wanted)} documents, so it has no "
                   f"{'validation loss' if 'valid' in wanted else 'test set'}")
    elif wanted:
        candidates = [doc_id for _, doc_id in sorted(smallest, reverse=True)][:max(0, drawn["train"] - 1)]
        moved = dict(zip(candidates, wanted, strict=False))  # never the corpus's last train document
    return {"documents": documents, "drawn": drawn, "moved": moved, "warning": warning}


def write_plan(parquets: list[str | Path], seed: int, split: list[float], out: str | Path,
               corpus: str = "") -> dict:
    plan = plan_splits(parquets, seed, split, corpus)
    write_text_atomic(out, json.dumps(plan, indent=1, ensure_ascii=False) + "\n")
    return plan


def read_moved(path: str | Path | None) -> dict[str, str]:
    """The {id: split} moves of a plan file (none when no plan is given)."""
    if path is None:
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))["moved"]
