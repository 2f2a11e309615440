"""The GPU speed levers that change the model, applied from outside it before compile and the optimizer
(torchtitan's pattern; gpt2core.model knows none of them). Each is off unless its train key is set; the keys
are checked by gpt2core.config.check_levers, and docs/gpu-levers.md says what each does and how it measured."""

from __future__ import annotations

import torch

from gpt2core.model import GPT
from gpt2core.training.float8 import apply_float8
from gpt2core.training.fused_add_norm import apply_fused_add_norm


def apply_model_levers(model: GPT, train_cfg: dict, device: torch.device) -> None:
    """train.fused_add_norm and train.float8 on `model` (in place; parameters and their names unchanged)."""
    if train_cfg.get("fused_add_norm"):
        apply_fused_add_norm(model)
    if train_cfg.get("float8"):
        apply_float8(model, train_cfg["float8"], device)
