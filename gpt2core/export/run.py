"""A finished run -> the Hugging Face layout under results/model/ (what `rule merge` does). A one-process
checkpoint is already full; a sharded one (tensor/data parallel) is merged by gpt2core.export.merge first."""

from __future__ import annotations

import json
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import export_hf
from gpt2core.export.merge import merged_model
from gpt2core.fsutil import sha256_file
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint.plain import read_meta


def final_checkpoint(done_json: str | Path) -> Path:
    """The checkpoint directory results/train/done.json names; a hard error if it is gone or incomplete."""
    done_json = Path(done_json)
    try:
        path = Path(json.loads(done_json.read_text(encoding="utf-8"))["checkpoint"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{done_json}: unreadable training summary ({exc})") from None
    weights = path / "dcp" / ".metadata" if (path / "dcp").is_dir() else path / "model.safetensors"
    if not (path / "meta.json").is_file() or not weights.is_file():
        raise WikiGPTError(f"{path}: checkpoint named by {done_json} is missing or incomplete")
    integrity.verify_checksums(path)
    return path


def check_tokenizer(ckpt: Path, tokenizer_json: str | Path) -> None:
    """A hard error unless `ckpt` was trained with exactly this tokenizer file."""
    meta = read_meta(ckpt)
    sha = sha256_file(tokenizer_json)
    if meta.get("tokenizer_sha256") != sha:
        raise WikiGPTError(f"{tokenizer_json}: sha256 {sha[:12]}... differs from the tokenizer {ckpt} was "
                           f"trained with ({str(meta.get('tokenizer_sha256'))[:12]}...)")


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, tokenizer_json: str | Path | None = None) -> None:
    """One step checkpoint of any tp/dp layout -> out_dir in the Hugging Face GPT-2 layout (atomic, padding
    trimmed); with `tokenizer_json`, only the tokenizer it was trained with, copied beside the weights."""
    ckpt = Path(ckpt)
    if tokenizer_json is not None:
        check_tokenizer(ckpt, tokenizer_json)
    export_hf(merged_model(ckpt), out_dir, tokenizer_json)  # any tp/dp layout -> one tp=1 model


def export_run(done_json: str | Path, out_dir: str | Path, tokenizer_json: str | Path) -> None:
    """The final checkpoint of a finished run (verified), exported with its tokenizer."""
    export_checkpoint(final_checkpoint(done_json), out_dir, tokenizer_json)
