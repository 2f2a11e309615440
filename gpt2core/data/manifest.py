"""Gather token shards into results/data/manifest.json, the one file training and evaluation read.

Format: {"dtype", "tokenizer": {"path", "sha256", "vocab_size", "eod_id"},
"splits": {split: {"tokens", "documents", "shards": [{"bin", "idx", "tokens", "documents", "sha256"}]}},
"dropped": {reason: count}}; paths are relative to the working directory. Every shard is checked
(index consistent with the token file) before it is listed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from gpt2core.data.encoder import load_encoder
from gpt2core.data.shards import DTYPES, SPLITS
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import sha256_file, write_text_atomic


def _rel(path: str | Path) -> str:
    return Path(os.path.relpath(path)).as_posix()


def check_shard(bin_path: Path, idx_path: Path, dtype: str) -> tuple[int, int]:
    """(tokens, documents) of one split file pair, or an error naming the file that is inconsistent."""
    itemsize = DTYPES[dtype][1].itemsize
    size = bin_path.stat().st_size
    if size % itemsize:
        raise WikiGPTError(f"{bin_path}: size {size} is not a multiple of {dtype}")
    idx = np.load(idx_path, mmap_mode="r")
    tokens = size // itemsize
    if idx.ndim != 1 or len(idx) < 1 or idx[0] != 0 or idx[-1] != tokens or np.any(np.diff(idx) <= 0):
        raise WikiGPTError(f"{idx_path}: document index does not match {bin_path.name} ({tokens} tokens)")
    return tokens, len(idx) - 1


def gather(shard_dirs: list[str | Path], tokenizer_json: str | Path, dtype: str, out: str | Path) -> dict:
    """Write the manifest for `shard_dirs` (each holding stats.json and the split files)."""
    encoder = load_encoder(tokenizer_json)
    splits = {s: {"tokens": 0, "documents": 0, "shards": []} for s in SPLITS}
    dropped: Counter[str] = Counter()
    for folder in map(Path, shard_dirs):
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        if stats["dtype"] != dtype or stats["eod_id"] != encoder.eod_id:
            raise WikiGPTError(f"{folder}/stats.json: made with another dtype or tokenizer; rerun tokenize")
        dropped.update(stats["presplit"]["dropped"])
        for s in SPLITS:
            bin_path, idx_path = folder / f"{s}.bin", folder / f"{s}.idx.npy"
            tokens, documents = check_shard(bin_path, idx_path, dtype)
            if documents == 0:
                continue
            splits[s]["shards"].append({"bin": _rel(bin_path), "idx": _rel(idx_path), "tokens": tokens,
                                        "documents": documents, "sha256": sha256_file(bin_path)})
            splits[s]["tokens"] += tokens
            splits[s]["documents"] += documents
    manifest = {
        "dtype": dtype,
        "tokenizer": {"path": _rel(tokenizer_json), "sha256": sha256_file(tokenizer_json),
                      "vocab_size": encoder.vocab_size, "eod_id": encoder.eod_id},
        "splits": splits,
        "dropped": dict(sorted(dropped.items())),
    }
    write_text_atomic(out, json.dumps(manifest, indent=1) + "\n")
    return manifest
