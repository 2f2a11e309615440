"""Helpers the trainer tests share: a small manifest + shards in the data engineer's format (so the trainer
tests do not depend on the data stages), and full configs with the schema's defaults filled in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

from gpt2core.config import ModelConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def learnable_documents(n_docs: int, vocab: int, eod: int, seed: int = 0) -> list[list[int]]:
    """Documents a small model can learn: each counts up from a random start with a random stride."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        length = int(rng.integers(40, 200))
        start, stride = int(rng.integers(0, vocab - 1)), int(rng.integers(1, 4))
        docs.append([(start + stride * i) % (vocab - 1) for i in range(length)])
    return [[t if t != eod else (t + 1) % vocab for t in d] for d in docs]


def write_shard(directory: Path, name: str, docs: list[list[int]], eod: int, dtype: str) -> dict:
    """X.bin (each document followed by EOD) and X.idx.npy (document starts, then the total)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = np.array([t for d in docs for t in [*d, eod]], dtype=dtype)
    starts = np.cumsum([0] + [len(d) + 1 for d in docs]).astype(np.int64)
    bin_path, idx_path = directory / f"{name}.bin", directory / f"{name}.idx.npy"
    tokens.tofile(bin_path)
    np.save(idx_path, starts)
    return {"bin": str(bin_path), "idx": str(idx_path), "tokens": int(len(tokens)), "documents": len(docs),
            "sha256": hashlib.sha256(bin_path.read_bytes()).hexdigest()}


def write_manifest(root: Path, vocab: int = 300, eod: int = 299, dtype: str = "uint16",
                   docs: dict[str, list[list[int]]] | None = None, shards: int = 2) -> Path:
    """A manifest whose splits are cut into `shards` shards each; returns its path."""
    if docs is None:
        all_docs = learnable_documents(400, vocab, eod)
        docs = {"train": all_docs[:360], "valid": all_docs[360:390], "test": all_docs[390:]}
    root.mkdir(parents=True, exist_ok=True)
    tok_path = root / "tokenizer.json"
    tok_path.write_text("{}", encoding="utf-8")
    splits = {}
    for split, split_docs in docs.items():
        parts = np.array_split(np.arange(len(split_docs)), shards)
        entries = [write_shard(root / "tokens" / f"{i:05d}", split, [split_docs[j] for j in part], eod, dtype)
                   for i, part in enumerate(parts)]
        splits[split] = {"tokens": sum(e["tokens"] for e in entries), "documents": len(split_docs),
                         "shards": entries}
    manifest = {"dtype": dtype, "tokenizer": {"path": str(tok_path), "sha256": "0" * 64, "vocab_size": vocab,
                                              "eod_id": eod},
                "splits": splits, "dropped": {}}
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return path


def full_config(model: dict | None = None, train: dict | None = None) -> dict:
    """The embedded default's model/train sections with every schema default filled in, plus overrides."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    validate(config, str(SCHEMA))
    config["model"].update(model or {})
    config["train"].update(train or {})
    return config


def typed(model: dict, train: dict) -> tuple[ModelConfig, TrainConfig]:
    """The sections as the trainer takes them (gpt2core.train builds them the same way from its arguments)."""
    return ModelConfig.from_dict(model), TrainConfig.from_dict(train)


def train_config(**train: object) -> TrainConfig:
    """The embedded default's train section, every schema default filled in, with overrides."""
    return TrainConfig.from_dict(full_config(train=train)["train"])


def model_config(**model: object) -> ModelConfig:
    """The embedded default's model section, every schema default filled in, with overrides."""
    return ModelConfig.from_dict(full_config(model=model)["model"])


def tiny_sections(**train: object) -> tuple[dict, dict]:
    """A ~100k-parameter model and a short CPU fp32 run over write_manifest()'s data."""
    config = full_config(model={"n_layer": 2, "n_head": 2, "n_embd": 32, "seq_len": 32, "n_positions": 32},
                         train={"iters": 20, "micro_batch": 4, "eval_interval": 10, "eval_iters": 2,
                                "save_interval": 10, "keep_last": 5, "device": "cpu", "warmup": 2,
                                "lr": 3e-3, "min_lr": 3e-4, **train})
    return config["model"], config["train"]


def test_written_manifest_is_what_the_loader_reads(tmp_path: Path) -> None:
    from gpt2core.data.loader import load_manifest, split_stream

    path = write_manifest(tmp_path)
    manifest = load_manifest(path)
    stream = split_stream(manifest, "valid", path)
    assert stream.total == manifest["splits"]["valid"]["tokens"]
    assert stream.read(stream.total - 1, 1)[0] == 299  # every document ends with EOD


def test_full_config_fills_schema_defaults() -> None:
    config = full_config()
    assert config["train"]["init_loss_scale"] == 65536 and config["model"]["vocab_multiple"] == 128
