"""Gradient norm and clipping, one owner: the plain one-process kind and the kind over a device mesh.

Plain (`global_grad_norm`, `unscale_and_clip_`, `fused_grad_scale`): foreach kernels, the multiplier kept on
the device so the step needs no host sync. On a mesh (`finish_grads_`, `mesh_grad_norm`,
`mesh_unscale_and_clip_`): gradients are DTensors sharded over some mesh dims and replicated over others;
clip_grad_norm_ on that mix is wrong, so each gradient's squared norm is reduced over the dims it is sharded
on and counted once over the rest, the same on every rank. Both clips take (params, norm, inv_scale,
max_norm)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor


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
    instead and save the pass: gpt2core.training.trainer)."""
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


# ---- on a device mesh (tensor/data parallel) -------------------------------------------------------------
def finish_grads_(params: Iterable[torch.nn.Parameter]) -> None:
    """After backward: gradients that DTensor left Partial (replicated LayerNorm parameters under sequence
    parallelism see only their sequence shard) are summed over the group into the parameter's placement,
    so the optimizer's local update and the norm read the full gradient."""
    for p in params:
        g = p.grad
        if isinstance(g, DTensor) and isinstance(p, DTensor) and tuple(g.placements) != tuple(p.placements):
            p.grad = g.redistribute(p.device_mesh, p.placements)


def mesh_grad_norm(params: Iterable[torch.nn.Parameter], mesh: DeviceMesh | None = None) -> torch.Tensor:
    """L2 norm over all gradients of the whole (sharded) model, in fp32, the same on every rank.

    Each gradient's squared norm is summed over the mesh dimensions it is sharded on and counted once
    over those it is replicated on; plain gradients count as replicated everywhere."""
    sums: dict[tuple[int, ...], torch.Tensor] = {}
    device = None
    for p in params:
        g = p.grad
        if g is None:
            continue
        if isinstance(g, DTensor):
            key = _sharded_mesh_dims(g, mesh)
            g = g.to_local()
        else:
            key = ()
        device = g.device
        sq = g.detach().float().square().sum()
        sums[key] = sums.get(key, torch.zeros((), device=device)) + sq
    if device is None:
        return torch.zeros(())
    total = sums.pop((), torch.zeros((), device=device))
    if mesh is not None and dist.is_initialized():
        ndim = mesh.ndim
        for key in _all_keys(ndim):  # every rank issues the same collectives in the same order
            t = sums.get(key, torch.zeros((), device=device)).clone()
            for dim in key:
                dist.all_reduce(t, op=dist.ReduceOp.SUM, group=mesh.get_group(dim))
            total = total + t
    else:
        for t in sums.values():
            total = total + t
    return total.sqrt()


def _sharded_mesh_dims(g: DTensor, mesh: DeviceMesh | None) -> tuple[int, ...]:
    """Indices into `mesh` of the dims `g` is sharded on (its own mesh may be a named sub-mesh)."""
    dims = [i for i, pl in enumerate(g.placements) if not (pl.is_replicate() or pl.is_partial())]  # Shard, _StridedShard
    names = g.device_mesh.mesh_dim_names
    if mesh is None or not names or not mesh.mesh_dim_names:
        return tuple(dims)
    return tuple(sorted(mesh.mesh_dim_names.index(names[i]) for i in dims))


def _all_keys(ndim: int) -> list[tuple[int, ...]]:
    keys = [()]
    for d in range(ndim):
        keys += [k + (d,) for k in keys]
    return sorted((k for k in keys if k), key=lambda k: (len(k), k))


def mesh_unscale_and_clip_(params: Iterable[torch.nn.Parameter], norm: torch.Tensor, inv_scale: float,
                           max_norm: float) -> None:
    """Unscale (fp16) and clip in one multiply on the local shards, with the global norm from above."""
    grads = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in params if p.grad is not None]
    coef = inv_scale
    if max_norm > 0:
        coef *= float(torch.clamp(max_norm / (norm * inv_scale + 1e-6), max=1.0))
    if coef != 1.0 and grads:
        torch._foreach_mul_(grads, coef)
