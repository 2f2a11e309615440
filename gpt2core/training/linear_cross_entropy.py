"""The output layer and its cross-entropy computed a chunk of positions at a time, so the (tokens, V) logits
are never all in memory (`train.loss_chunk`).

Why: at GPT-2 small, batch 16, seq 1024, the logits are 16,384 x 50,304 values: 1.6 GB in bf16 plus 3.3 GB
for the fp32 upcast, and autograd keeps them from the forward to the backward. Here each chunk computes its
logits, its loss and its gradients (for the hidden states and the output weight) inside the forward and
drops the logits; the backward only multiplies the stored gradients by the incoming scalar. The weight
passed in holds only the real vocabulary's rows, which is the same as the model's -inf on padded ids.

bf16 and fp32 only: an fp16 gradient needs the loss scale before it is rounded to fp16, and the forward,
where these gradients are made, does not know it (gpt2core.config refuses the combination).
"""

from __future__ import annotations

import torch


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         mask: torch.Tensor | None, chunk: int, compute_dtype: torch.dtype) -> torch.Tensor:
    """Mean next-token cross-entropy of softmax(hidden @ weight.T) over unmasked positions (mask: 1 =
    counted), as `gpt2core.model.lm_loss` of the full logits would give it.

    hidden (..., C) final hidden states, weight (V, C), targets (...) ids < V, mask (...) or None; the matmuls
    run in `compute_dtype`, the softmax and the sums in fp32; `chunk` positions at a time."""
    h = hidden.reshape(-1, hidden.shape[-1])  # (N, C)
    t = targets.reshape(-1)
    m = torch.ones_like(t, dtype=torch.float32) if mask is None else mask.reshape(-1).to(torch.float32)
    inv_count = m.sum().clamp_min(1.0).reciprocal()
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _ChunkedLinearCrossEntropy.apply(h, weight, t, m, inv_count, chunk, compute_dtype)
    with torch.autocast(h.device.type, enabled=False):
        w = weight.to(compute_dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, h.shape[0], chunk):
            logits = (h[s:s + chunk].to(compute_dtype) @ w.T).float()  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)
            total += (_token_losses(logits, lse, t[s:s + chunk]) * m[s:s + chunk]).sum()
    return total * inv_count


def _token_losses(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row, given the rows' logsumexp: (n, V) fp32, (n,), (n,) -> (n,)."""
    return lse - logits.gather(1, targets[:, None]).squeeze(1)


def _grad_logits(logits: torch.Tensor, lse: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """d(sum of masked losses)/d logits = (softmax - one_hot(target)) * mask, row by row: (n, V) fp32.

    Eager: in place on the logits, then a scatter of n values (the fewest passes over (n, V)). Compiled: one
    pointwise expression, which Inductor fuses into the single kernel that writes the 16-bit gradient; a
    scatter there would first write the whole fp32 tensor."""
    if torch.compiler.is_compiling():
        p = torch.exp(logits - lse[:, None])
        is_target = torch.arange(logits.shape[1], device=logits.device)[None, :] == t[:, None]
        return torch.where(is_target, p - 1.0, p) * m[:, None]
    g = logits.sub_(lse[:, None]).exp_().mul_(m[:, None])
    return g.scatter_add_(1, t[:, None], -m[:, None])


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss sum and both gradients chunk by chunk; backward scales them."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, t: torch.Tensor, m: torch.Tensor,
                inv_count: torch.Tensor, chunk: int, compute_dtype: torch.dtype) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):
            w = weight.to(compute_dtype)  # (V, C)
            grad_h = torch.empty(h.shape, dtype=compute_dtype, device=h.device)  # (N, C)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)  # (V, C), fp32 sum
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            for s in range(0, h.shape[0], chunk):
                hs, ts, ms = h[s:s + chunk].to(compute_dtype), t[s:s + chunk], m[s:s + chunk]
                logits = (hs @ w.T).float()  # (n, V)
                lse = torch.logsumexp(logits, dim=-1)  # (n,)
                total += (_token_losses(logits, lse, ts) * ms).sum()
                g = _grad_logits(logits, lse, ts, ms).to(compute_dtype)
                grad_h[s:s + chunk] = g @ w  # (n, C)
                grad_w += (g.T @ hs).float()  # (V, C)
        ctx.save_for_backward(grad_h, grad_w, inv_count)
        ctx.dtypes = (h.dtype, weight.dtype)
        return total * inv_count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w, inv_count = ctx.saved_tensors
        scale = (grad_out * inv_count).float()
        h_dtype, w_dtype = ctx.dtypes
        return ((grad_h.float() * scale).to(h_dtype), (grad_w * scale).to(w_dtype),
                None, None, None, None, None)
