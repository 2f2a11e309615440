"""Tokenize one presplit shard into train/valid/test token files.

`<split>.bin` holds little-endian tokens (uint16 or uint32), each document followed by EOD;
`<split>.idx.npy` holds int64 document starts (documents + 1 entries, first 0, last = tokens). A document's
split comes from a hash of the seed and its id alone, so the shard count never moves a document. Batches
stream from Parquet to the files (offsets go through a raw side file), so memory does not grow with the
shard.
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from gpt2core.data.encoder import Encoder, load_encoder
from gpt2core.data.presplit import shard_stats
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir, sha256_file

SPLITS = ("train", "valid", "test")
DTYPES = {"uint16": ("H", np.dtype("<u2"), 1 << 16), "uint32": ("I", np.dtype("<u4"), 1 << 32)}
BATCH_DOCS = 256
CHECK_DOCS = 16
CHECK_CHARS = 20_000


def split_of(doc_id: str, seed: int, bounds: tuple[float, float]) -> int:
    """0/1/2 = train/valid/test for a document, from a hash of (seed, id) only."""
    h = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2.0**64
    return 0 if u < bounds[0] else 1 if u < bounds[1] else 2


def split_bounds(weights: list[float]) -> tuple[float, float]:
    total = float(sum(weights))
    if len(weights) != 3 or total <= 0:
        raise WikiGPTError(f"data.split: need three weights with a positive sum, got {weights}")
    return weights[0] / total, (weights[0] + weights[1]) / total


def check_dtype(vocab_size: int, dtype: str, where: str) -> None:
    if dtype not in DTYPES:
        raise WikiGPTError(f"data.dtype: unknown dtype {dtype!r}")
    if vocab_size > DTYPES[dtype][2]:
        raise WikiGPTError(f"{where}: vocabulary of {vocab_size} tokens does not fit data.dtype {dtype} "
                           f"(use uint32)")


def _checked(encoder: Encoder, texts: list[str], log) -> Encoder:
    """Confirm tiktoken and tokenizers agree on this shard's first documents; else use tokenizers."""
    if encoder.backend != "tiktoken" or not texts:
        return encoder
    sample, size = [], 0
    for text in texts[:CHECK_DOCS]:  # a few documents, at most ~CHECK_CHARS (tokenizers is slow)
        sample.append(text[: max(0, CHECK_CHARS - size)])
        size += len(sample[-1])
    want = [e.ids for e in encoder.hf.encode_batch(sample, add_special_tokens=False)]
    if encoder.encode_batch(sample) == want:
        return encoder
    print("warning: tiktoken and tokenizers disagree on this shard; using tokenizers", file=log)
    return Encoder(encoder.hf, None)


class _SplitWriter:
    """Appends documents of one split: tokens to .bin, end offsets to a raw int64 side file."""

    def __init__(self, folder: Path, split: str, typecode: str) -> None:
        self.bin_path = folder / f"{split}.bin"
        self.raw_path = folder / f".{split}.idx.raw"
        self.bin = open(self.bin_path, "wb")
        self.raw = open(self.raw_path, "wb")
        self.typecode = typecode
        self.tokens = 0
        self.documents = 0

    def add(self, docs: list[list[int]], eod: int) -> None:
        buf = array(self.typecode)
        ends = array("q")
        for ids in docs:
            buf.extend(ids)
            buf.append(eod)
            ends.append(self.tokens + len(buf))
        if sys.byteorder != "little":
            buf.byteswap()
            ends.byteswap()
        buf.tofile(self.bin)
        ends.tofile(self.raw)
        self.tokens += len(buf)
        self.documents += len(docs)

    def close(self) -> None:
        self.bin.close()
        self.raw.close()
        idx = np.lib.format.open_memmap(self.bin_path.with_suffix(".idx.npy"), mode="w+", dtype="<i8",
                                        shape=(self.documents + 1,))
        idx[0] = 0
        if self.documents:
            idx[1:] = np.memmap(self.raw_path, dtype="<i8", mode="r", shape=(self.documents,))
        idx.flush()
        del idx
        self.raw_path.unlink()


def tokenize_shard(parquet: str | Path, tokenizer_json: str | Path, outdir: str | Path, split: list[float],
                   seed: int, dtype: str = "uint16", threads: int = 1, log=sys.stderr,
                   moved: dict[str, str] | None = None) -> dict:
    """Write `outdir`/{train,valid,test}.{bin,idx.npy} and stats.json for one presplit shard; `moved` maps
    ids to the split the corpus's split plan (gpt2core.data.split_plan) gives them instead of their draw."""
    moved = moved or {}
    encoder = load_encoder(tokenizer_json)
    check_dtype(encoder.vocab_size, dtype, str(tokenizer_json))
    bounds = split_bounds(split)
    typecode = DTYPES[dtype][0]
    presplit = shard_stats(parquet)
    with atomic_dir(outdir) as tmp:
        writers = [_SplitWriter(tmp, s, typecode) for s in SPLITS]
        first = True
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=BATCH_DOCS, columns=["id", "text"]):
            ids = batch.column(0).to_pylist()
            texts = batch.column(1).to_pylist()
            if first:
                encoder, first = _checked(encoder, texts, log), False
            encoded = encoder.encode_batch(texts, num_threads=threads)
            groups: list[list[list[int]]] = [[], [], []]
            for doc_id, toks in zip(ids, encoded, strict=True):
                where = SPLITS.index(moved[doc_id]) if doc_id in moved else split_of(doc_id, seed, bounds)
                groups[where].append(toks)
            for writer, docs in zip(writers, groups, strict=True):
                if docs:
                    writer.add(docs, encoder.eod_id)
        for writer in writers:
            writer.close()
        stats = {"dtype": dtype, "encoder": encoder.backend, "eod_id": encoder.eod_id,
                 "vocab_size": encoder.vocab_size, "tokenizer_sha256": sha256_file(tokenizer_json),
                 "presplit": presplit,
                 "splits": {s: {"tokens": w.tokens, "documents": w.documents} for s, w in zip(SPLITS, writers, strict=True)}}
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats
