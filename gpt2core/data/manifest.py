"""Gather token shards into results/data/manifest.json, the one file training and evaluation read.

Format: {"dtype", "tokenizer": {"path", "sha256", "vocab_size", "eod_id"},
"splits": {split: {"tokens", "documents", "shards": [{"bin", "idx", "tokens", "documents", "sha256"}]}},
"dropped": {reason: count}, "corpora": [{"name", "kind", "lang", "weight", "splits": {...same shape...},
"dropped"}]}; paths are relative to the working directory. `splits` is the union of all corpora (what a
single-stream reader trains on); `corpora` lets a trainer blend corpora by weight and report a valid loss
per corpus. A shard's corpus is the name of its folder's parent (data/tokens/<corpus>/<shard>). With a
trained BPE, `tokenizer.heldout` holds characters per token per language on held-out text. Every shard is
checked (index consistent with the token file) before it is listed. Text quality per corpus: `markup`
(leftovers counted in the text that reaches the tokenizer, gpt2core.data.markup), `cleaned` (what presplit
removed), `split_plan` (documents drawn per split and those moved so valid and test are not empty) and
`warnings` (a corpus too small for a valid set, a small tokenizer held-out set), also listed at the top.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from gpt2core.data.encoder import load_encoder
from gpt2core.data.markup import markup_summary
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
    try:
        idx = np.load(idx_path, mmap_mode="r")  # allow_pickle stays False: a pickled index is refused
    except (ValueError, OSError, EOFError) as exc:
        raise WikiGPTError(f"{idx_path}: not a readable int64 document index ({exc})") from None
    tokens = size // itemsize
    if idx.ndim != 1 or len(idx) < 1 or idx[0] != 0 or idx[-1] != tokens or np.any(np.diff(idx) <= 0):
        raise WikiGPTError(f"{idx_path}: document index does not match {bin_path.name} ({tokens} tokens)")
    return tokens, len(idx) - 1


def _empty_splits() -> dict:
    return {s: {"tokens": 0, "documents": 0, "shards": []} for s in SPLITS}


def _add(splits: dict, split: str, entry: dict) -> None:
    splits[split]["shards"].append(entry)
    splits[split]["tokens"] += entry["tokens"]
    splits[split]["documents"] += entry["documents"]


def _section(name: str, meta: dict) -> dict:
    """A corpus's manifest section, empty; counts are Counters until the manifest is written."""
    return {"name": name, "kind": meta.get("kind"), "lang": meta.get("lang"),
            "weight": float(meta.get("weight", 1.0)), "splits": _empty_splits(), "dropped": Counter(),
            "cleaned": Counter(), "markup": Counter(), "warnings": []}


def gather(shard_dirs: list[str | Path], tokenizer_json: str | Path, dtype: str, out: str | Path,
           corpora: list[dict] | None = None, tokenizer_stats: str | Path | None = None,
           split_plans: list[str | Path] = ()) -> dict:
    """Write the manifest for `shard_dirs` (each holding stats.json and the split files).

    `corpora`: {"name", "kind", "lang", "weight"} of each corpus, in config order (a corpus missing here
    gets kind/lang None and weight 1.0); `tokenizer_stats`: the tokenizer stage's stats.json; `split_plans`:
    data/tokens/<corpus>/split_plan.json of each corpus.
    """
    encoder = load_encoder(tokenizer_json)
    splits = _empty_splits()
    dropped: Counter[str] = Counter()
    meta = {c["name"]: c for c in corpora or []}
    sections: dict[str, dict] = {}
    for name in meta:
        sections[name] = _section(name, meta[name])
    tokenizer_sha = sha256_file(tokenizer_json)
    for folder in map(Path, shard_dirs):
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        # shards tokenized before their tokenizer's hash was recorded are checked by dtype and EOD id only
        if (stats["dtype"] != dtype or stats["eod_id"] != encoder.eod_id
                or stats.get("tokenizer_sha256", tokenizer_sha) != tokenizer_sha):
            raise WikiGPTError(f"{folder}/stats.json: made with another dtype or tokenizer than {tokenizer_json}; "
                               "rerun tokenize")
        name = folder.parent.name
        section = sections.setdefault(name, _section(name, {}))
        dropped.update(stats["presplit"]["dropped"])
        for key in ("dropped", "cleaned", "markup"):  # shards presplit before counting have no cleaned/markup
            section[key].update(stats["presplit"].get(key, {}))
        for s in SPLITS:
            bin_path, idx_path = folder / f"{s}.bin", folder / f"{s}.idx.npy"
            tokens, documents = check_shard(bin_path, idx_path, dtype)
            if documents == 0:
                continue
            entry = {"bin": _rel(bin_path), "idx": _rel(idx_path), "tokens": tokens, "documents": documents,
                     "sha256": sha256_file(bin_path)}
            _add(splits, s, entry)
            _add(section["splits"], s, dict(entry))
    for plan_path in map(Path, split_plans):
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        section = sections.get(plan_path.parent.name)
        if section is not None:
            section["split_plan"] = {"documents": plan["documents"], "drawn": plan["drawn"],
                                     "moved": plan["moved"]}
            section["warnings"] += [plan["warning"]] if plan["warning"] else []
    for section in sections.values():
        section["dropped"] = dict(sorted(section["dropped"].items()))
        section["cleaned"] = dict(sorted(section["cleaned"].items()))
        section["markup"] = markup_summary(section["markup"])
    tokenizer = {"path": _rel(tokenizer_json), "sha256": tokenizer_sha,
                 "vocab_size": encoder.vocab_size, "eod_id": encoder.eod_id}
    if tokenizer_stats is not None:
        heldout = json.loads(Path(tokenizer_stats).read_text(encoding="utf-8")).get("heldout")
        if heldout:
            tokenizer["heldout"] = heldout
    warnings = [w for section in sections.values() for w in section["warnings"]]
    warnings += [m["warning"] for m in tokenizer.get("heldout", {}).values() if m.get("warning")]
    manifest = {
        "dtype": dtype,
        "tokenizer": tokenizer,
        "splits": splits,
        "dropped": dict(sorted(dropped.items())),
        "corpora": list(sections.values()),
        "warnings": warnings,
    }
    write_text_atomic(out, json.dumps(manifest, indent=1) + "\n")
    return manifest
