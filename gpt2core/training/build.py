"""What a run is made of, built from its typed config: the model's shape, the initialised model with its
speed levers, and the loss it trains on (compiled as configured).

The levers that change the model (train.fused_add_norm, train.float8) are applied here from outside it,
before parallelism, compile and the optimizer (torchtitan's pattern; gpt2core.model knows none of them);
gpt2core.config.check_levers decides which combinations may run, docs/gpu-levers.md what each does.
"""

from __future__ import annotations

import torch

from gpt2core.config import ModelConfig, TrainConfig
from gpt2core.model import GPT, GPTConfig
from gpt2core.parallel import init_model
from gpt2core.training.float8 import apply_float8
from gpt2core.training.fused_add_norm import apply_fused_add_norm
from gpt2core.training.step import AUTOCAST_DTYPES, CausalLMLoss, compile_options


def gpt_config(model: ModelConfig, vocab_size: int, tp: int = 1) -> GPTConfig:
    """GPTConfig from config['model'] and the tokenizer; the padded vocabulary from gpt2core.vocab."""
    return GPTConfig.padded(vocab_size, model.vocab_multiple, tp, n_positions=model.n_positions,
                            n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, dropout=model.dropout)


def build_model(cfg: GPTConfig, train: TrainConfig, device: torch.device) -> GPT:
    """Initialise on CPU from train.seed (same weights on every device and every tp: the tp padding rows are
    added after the tp=1 init), then activation checkpointing, the residual dtype and the levers."""
    model = init_model(cfg, train.seed)
    model.activation_checkpointing = train.activation_checkpointing
    if train.half_residual:
        model.residual_dtype = AUTOCAST_DTYPES[train.precision]
    model = model.to(device)
    if train.fused_add_norm:  # in place; parameters and their names unchanged
        apply_fused_add_norm(model)
    if train.float8:
        apply_float8(model, train.float8, device)
    return model


def build_loss(model: torch.nn.Module, train: TrainConfig, device: torch.device, tp: bool) -> torch.nn.Module:
    """The loss the run trains on, compiled as train.compile says: with tensor parallelism the model alone
    (DTensor outputs; the loss stays eager), else model and loss as one graph (shapes never change in a run)."""
    compile_kw = compile_options(train.compile)
    if compile_kw is not None and tp:
        model = torch.compile(model, **compile_kw)
    loss: torch.nn.Module = CausalLMLoss(model, train.precision, device, train.loss_chunk or 0,
                                         bool(train.liger_loss))
    if compile_kw is not None and not tp:
        loss = torch.compile(loss, dynamic=False, **compile_kw)
    return loss
