"""A finished run -> the Hugging Face layout under results/model/ (what `rule merge` does for tp=1).
The checkpoint -> full state dict step is training.checkpoint.full_state_dict, the one place a tp>1 merge
plugs in."""

from __future__ import annotations

import json
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import sha256_file
from gpt2core.hf import export_hf
from gpt2core.model import GPT
from gpt2core.training.checkpoint import full_state_dict, read_meta


def final_checkpoint(done_json: str | Path) -> Path:
    """The checkpoint directory results/train/done.json names; a hard error if it is gone or incomplete."""
    done_json = Path(done_json)
    try:
        path = Path(json.loads(done_json.read_text(encoding="utf-8"))["checkpoint"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{done_json}: unreadable training summary ({exc})") from None
    if not (path / "meta.json").is_file() or not (path / "model.safetensors").is_file():
        raise WikiGPTError(f"{path}: checkpoint named by {done_json} is missing or incomplete")
    return path


def export_run(done_json: str | Path, out_dir: str | Path, tokenizer_json: str | Path) -> None:
    """Load the final checkpoint, check it was trained with this tokenizer, export it with the tokenizer."""
    ckpt = final_checkpoint(done_json)
    meta = read_meta(ckpt)
    sha = sha256_file(tokenizer_json)
    if meta.get("tokenizer_sha256") != sha:
        raise WikiGPTError(f"{tokenizer_json}: sha256 {sha[:12]}... differs from the tokenizer {ckpt} was "
                           f"trained with ({str(meta.get('tokenizer_sha256'))[:12]}...)")
    cfg, state = full_state_dict(ckpt)
    model = GPT(cfg)
    model.load_state_dict(state)
    export_hf(model, out_dir, tokenizer_json)
