"""Any trained layout -> one full GPT-2 (SPEC "Model-parallel layout"): the merge `rule merge` runs.

A tp=1 checkpoint is already full (gpt2core.training.checkpoint.plain). A sharded (DCP) checkpoint is read
whole, offline, in one process; then its tensor-parallel layout is undone:
- token embedding: DCP already concatenated the vocabulary rows; the padding for tp is trimmed back to
  the tp=1 padded size (gpt2core.vocab), which export_hf trims again to the real vocabulary;
- attention c_attn weight and bias: rank r held [Q_r; K_r; V_r]; regrouped into [Q; K; V];
- column/row-parallel MLP and projections: DCP already concatenated them; replicated tensors as saved.
The result loads into a plain GPT (tied lm_head); gpt2core.export.run writes it in the Hugging Face layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig
from gpt2core.parallel import qkv_from_tp_layout
from gpt2core.training.checkpoint.plain import config_from_meta, full_state_dict, read_meta
from gpt2core.training.checkpoint.sharded import is_sharded, load_full_model_state
from gpt2core.vocab import padded_vocab_size


def merge_tp_state(sd: dict[str, torch.Tensor], cfg_tp: GPTConfig, tp: int,
                   where: str | Path = "checkpoint") -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Full tensors in the tp layout -> (tp=1 config, tp=1 state dict with a tied lm_head)."""
    cfg = GPTConfig(**{**cfg_tp.to_dict(),
                       "padded_vocab_size": padded_vocab_size(cfg_tp.vocab_size, cfg_tp.vocab_multiple, 1)})
    expected = {k: tuple(v.shape) for k, v in _shapes(cfg_tp).items()}
    for key, shape in expected.items():
        if key not in sd:
            raise WikiGPTError(f"{where}: tensor {key!r} missing from the checkpoint")
        if tuple(sd[key].shape) != shape:
            raise WikiGPTError(f"{where}: {key} has shape {tuple(sd[key].shape)}, the model config says {shape}")
    out = {}
    for key in expected:
        t = sd[key]
        if key.endswith("attn.c_attn.weight") or key.endswith("attn.c_attn.bias"):
            t = qkv_from_tp_layout(t, tp)
        elif key == "wte.weight":
            t = t[: cfg.padded_vocab_size]
        out[key] = t.contiguous()
    out["lm_head.weight"] = out["wte.weight"]
    return cfg, out


def _shapes(cfg: GPTConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        model = GPT(cfg)
    return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}


def merged_checkpoint(ckpt: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """A step checkpoint of any layout -> (tp=1 GPTConfig, full state dict)."""
    ckpt = Path(ckpt)
    if not is_sharded(ckpt):
        return full_state_dict(ckpt)
    cfg_tp = config_from_meta(ckpt, read_meta(ckpt))  # bounded before any tensor is allocated
    meta, sd = load_full_model_state(ckpt)
    tp = int(meta.get("tp", 1))
    return merge_tp_state(sd, cfg_tp, tp, ckpt)


def merged_model(ckpt: str | Path) -> GPT:
    """The merged GPT in eval mode: what the export writes, and what tests compare."""
    cfg, sd = merged_checkpoint(ckpt)
    with torch.device("meta"):
        model = GPT(cfg)
    model.load_state_dict(sd, assign=True)
    model.lm_head.weight = model.wte.weight
    return model.eval()
