"""One training step's math: autocast, the model and loss as one callable, gradient accumulation, evaluation.

Why apart from the loop (gpt2core.training.trainer): these are what a benchmark or a tensor-parallel run
calls on their own, and what `torch.compile` sees; the loop around them owns state, checkpoints and timing.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from gpt2core.data.loader import Batch, BatchSource
from gpt2core.model import lm_loss
from gpt2core.parallel import local_loss, tp_context
from gpt2core.training.liger_loss import LigerLoss
from gpt2core.training.linear_cross_entropy import linear_cross_entropy

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_ctx(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """fp16/bf16 run as autocast over fp32 master weights; fp32 runs plain."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def to_device(batch: Batch, device: torch.device) -> Batch:
    """On CUDA through pinned memory, so the copy is asynchronous and never waits for the GPU to drain."""
    if device.type != "cuda":
        return batch
    return Batch(*(t.pin_memory().to(device, non_blocking=True) for t in (batch.x, batch.y, batch.mask)))


def compile_options(setting: bool | str) -> dict | None:
    """`train.compile`: false (eager), true or "default" (torch.compile's default mode), or another mode
    name ("max-autotune" searches matmul kernels, minutes of compile; "reduce-overhead" adds CUDA graphs)."""
    if setting is False:
        return None
    return {} if setting in (True, "default") else {"mode": setting}


class CausalLMLoss(torch.nn.Module):
    """Model, autocast and the masked cross-entropy as one callable: (x, y, mask) -> mean loss.

    Why one module: `torch.compile` of it fuses the padded-id mask, the fp32 upcast and the cross-entropy
    around the output layer, where compiling the model alone leaves 4-6 eager passes over the (B, T, V)
    logits (at GPT-2 small, batch 16, seq 1024: 3.3 GB each in fp32) to run after every forward."""

    def __init__(self, model: torch.nn.Module, precision: str, device: torch.device, loss_chunk: int = 0,
                 liger: bool = False) -> None:
        super().__init__()
        self.model, self.precision, self.device_type = model, precision, device.type
        self.loss_chunk = loss_chunk  # > 0: the output layer and loss by chunks, no (B, T, V) logits
        # train.liger_loss: the same through Liger-Kernel's fused linear cross-entropy
        self.liger = LigerLoss(AUTOCAST_DTYPES.get(precision, torch.float32)) if liger else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with autocast_ctx(self.precision, torch.device(self.device_type)):
            if self.liger is not None:
                return self.model(x, head=self.liger.head(y, mask))
            if self.loss_chunk:
                head = functools.partial(linear_cross_entropy, targets=y, mask=mask, chunk=self.loss_chunk,
                                         compute_dtype=AUTOCAST_DTYPES.get(self.precision, torch.float32))
                return self.model(x, head=head)
            logits = self.model(x)  # (B, T, V)
        return lm_loss(logits, y, mask)


def forward_backward(loss_fn: torch.nn.Module, batches: list[Batch], loss_scale: float,
                     device: torch.device, tp: bool = False) -> torch.Tensor:
    """Gradient accumulation over micro-batches; returns the mean loss (detached, unscaled). Under tensor
    parallelism forward, loss and backward run in tp_context (vocabulary-parallel loss)."""
    total = torch.zeros((), device=device)
    for batch in batches:
        with tp_context(tp):
            loss = loss_fn(batch.x, batch.y, batch.mask) / len(batches)
            (loss * loss_scale if loss_scale != 1.0 else loss).backward()
        total += local_loss(loss.detach())
    return total


@torch.no_grad()
def evaluate(loss_fn: torch.nn.Module, source: BatchSource, iters: int, device: torch.device,
             tp: bool = False) -> float:
    """Mean valid loss over the first `iters` fixed valid batches (every rank evaluates the same ones)."""
    loss_fn.eval()
    losses = []
    for i in range(iters):
        batch = to_device(source.get(i), device)
        with tp_context(tp):
            losses.append(local_loss(loss_fn(batch.x, batch.y, batch.mask)).item())
    loss_fn.train()
    return sum(losses) / len(losses)
