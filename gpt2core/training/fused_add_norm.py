"""`train.fused_add_norm`: each residual add and the LayerNorm after it as one autograd op.

Why: the residual stream is read and written around every add and again by the LayerNorm that follows it, in
the forward and the backward; at GPT-2 small that memory traffic, not arithmetic, is most of the non-matmul
half of a step. As one op, the forward reads x and y once and writes the sum and the normalized output (in the
autocast dtype, so the next linear's cast is free), saving only the sum and two floats a row; the backward
adds the residual gradient to the LayerNorm gradient in the same expression. Written in plain torch so that
torch.compile fuses each direction into a kernel; eager it is more ops than the plain path, not fewer.

The blocks are chained so that every add meets the next LayerNorm, across block boundaries:
ln_1(x0) -> [attn, add + ln_2, mlp, add + next ln_1] ... -> add + ln_f. Applied from outside the model
(`apply_fused_add_norm` sets GPT.trunk), torchtitan's pattern; the weights and their names are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from gpt2core.model import GPT


class AddLayerNorm(torch.autograd.Function):
    """(x, y) -> (s = x + y, layer_norm(s)); saves s and the rows' mean and 1/std, nothing else."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        s = x + y  # the residual stream's dtype: x's, or fp32 when either is (as the plain add promotes)
        sf = s.float()
        mean = sf.mean(-1, keepdim=True)
        rstd = torch.rsqrt((sf - mean).square().mean(-1, keepdim=True) + eps)
        h = (sf - mean) * rstd * weight + bias  # fp32, as LayerNorm gives it under autocast
        if torch.is_autocast_enabled(x.device.type):
            h = h.to(torch.get_autocast_dtype(x.device.type))  # what the next linear would cast it to
        ctx.save_for_backward(s, mean, rstd, weight)
        ctx.dtypes = (x.dtype, y.dtype, weight.dtype, bias.dtype)
        ctx.set_materialize_grads(False)
        return s, h

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor | None, grad_h: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        s, mean, rstd, weight = ctx.saved_tensors
        x_dtype, y_dtype, w_dtype, b_dtype = ctx.dtypes
        grad = torch.zeros(s.shape, dtype=torch.float32, device=s.device) if grad_s is None else grad_s.float()
        grad_w = grad_b = None
        if grad_h is not None:
            xhat = (s.float() - mean) * rstd
            g = grad_h.float()
            lead = tuple(range(g.dim() - 1))
            grad_w, grad_b = (g * xhat).sum(lead).to(w_dtype), g.sum(lead).to(b_dtype)
            gx = g * weight.float()
            grad = grad + rstd * (gx - gx.mean(-1, keepdim=True) - xhat * (gx * xhat).mean(-1, keepdim=True))
        return grad.to(x_dtype), grad.to(y_dtype), grad_w, grad_b, None


def add_layer_norm(x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + y, norm(x + y)) through AddLayerNorm."""
    return AddLayerNorm.apply(x, y, norm.weight, norm.bias, norm.eps)


def fused_trunk(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """The blocks and the final LayerNorm of `model` with every residual add fused into the next LayerNorm:
    embeddings (B, T, C) -> ln_f output (B, T, C), as GPT.forward's plain loop gives it."""
    blocks = list(model.h)
    next_norms = [b.ln_1 for b in blocks[1:]] + [model.ln_f]
    h = blocks[0].ln_1(x)
    for block, next_norm in zip(blocks, next_norms, strict=True):
        x, h = add_layer_norm(x, block.attn(h), block.ln_2)
        x, h = add_layer_norm(x, block.mlp(h), next_norm)
    return h


def apply_fused_add_norm(model: GPT) -> None:
    """Run `model`'s blocks through fused_trunk (training and evaluation; generation's KV-cache path keeps
    the plain loop)."""
    model.trunk = fused_trunk
