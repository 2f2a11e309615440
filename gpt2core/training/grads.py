"""The global gradient norm and clipping. Kept apart from the step so that a tensor/data-parallel run can
swap in a norm reduced across ranks (`reduce_sq` sums the squared norm over the group)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def global_grad_norm(params: Iterable[torch.nn.Parameter],
                     reduce_sq: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """L2 norm of all gradients, in fp32 (inf or nan if any gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads, 2.0)
    sq = torch.stack([n.float() for n in norms]).square().sum()
    if reduce_sq is not None:
        sq = reduce_sq(sq)
    return sq.sqrt()


def grad_multiplier(norm: torch.Tensor, inv_scale: float, max_norm: float) -> torch.Tensor | float:
    """What every gradient is multiplied by before the optimizer step: fp16 unscaling times the clip
    coefficient. A device tensor when clipping (no host sync in the step; inv_scale is a power of two, so the
    product rounds exactly as a Python-float coefficient did), else the float inv_scale."""
    if max_norm > 0:
        return torch.clamp(max_norm / (norm.float() * inv_scale + 1e-6), max=1.0) * inv_scale
    return inv_scale


def unscale_and_clip_(params: Iterable[torch.nn.Parameter], norm: torch.Tensor, inv_scale: float,
                      max_norm: float) -> None:
    """Multiply gradients by grad_multiplier in one pass (a fused optimizer can take it as its grad_scale
    instead and save the pass: gpt2core.train)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    mult = grad_multiplier(norm, inv_scale, max_norm)
    if isinstance(mult, torch.Tensor):
        torch._foreach_mul_(grads, mult.to(grads[0].device))
    elif mult != 1.0:
        torch._foreach_mul_(grads, mult)


def fused_grad_scale(norm: torch.Tensor, inv_scale: float, max_norm: float,
                     device: torch.device) -> torch.Tensor | None:
    """What a fused AdamW divides every gradient by (its `grad_scale`) to apply grad_multiplier inside the
    kernel, saving unscale_and_clip_'s pass over the gradients; None when there is nothing to apply."""
    mult = grad_multiplier(norm, inv_scale, max_norm)
    if isinstance(mult, torch.Tensor):
        return 1.0 / mult
    return torch.tensor(1.0 / mult, device=device) if mult != 1.0 else None
