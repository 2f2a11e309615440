"""The learning rate as a pure function of the step: linear warmup, then cosine or linear decay to min_lr
(the reference's AnnealingLR). Pure, so resuming needs no scheduler state and a skipped fp16 step simply
does not advance the step counter the schedule reads."""

from __future__ import annotations

import math


def warmup_iters(warmup: float, iters: int) -> int:
    """`warmup` < 1 is a fraction of iters (the reference's 1%), otherwise a number of iterations."""
    return int(round(warmup * iters)) if warmup < 1 else int(warmup)


def lr_at(step: int, *, lr: float, min_lr: float, iters: int, warmup: float, decay: str) -> float:
    """LR for optimizer step `step` (0-based count of steps already taken)."""
    w = warmup_iters(warmup, iters)
    if w > 0 and step < w:
        return lr * (step + 1) / w
    if decay == "constant":
        return lr
    progress = min(1.0, (step - w) / max(1, iters - w))
    if decay == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if decay == "linear":
        return min_lr + (lr - min_lr) * (1.0 - progress)
    raise ValueError(f"unknown decay {decay!r}")
