"""A finished run -> the Hugging Face layout under results/model/ (what `rule merge` does). A one-process
checkpoint is already full; a sharded one (tensor/data parallel) is merged by gpt2core.merge first."""

from __future__ import annotations

import json
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import sha256_file
from gpt2core.hf import export_hf
from gpt2core.merge import merged_model
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


def export_run(done_json: str | Path, out_dir: str | Path, tokenizer_json: str | Path) -> None:
    """Load the final checkpoint, check it was trained with this tokenizer, export it with the tokenizer."""
    ckpt = final_checkpoint(done_json)
    meta = read_meta(ckpt)
    sha = sha256_file(tokenizer_json)
    if meta.get("tokenizer_sha256") != sha:
        raise WikiGPTError(f"{tokenizer_json}: sha256 {sha[:12]}... differs from the tokenizer {ckpt} was "
                           f"trained with ({str(meta.get('tokenizer_sha256'))[:12]}...)")
    export_hf(merged_model(ckpt), out_dir, tokenizer_json)  # any tp/dp layout -> one tp=1 model
