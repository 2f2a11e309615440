"""`train.cuda_graph`: the whole training step (every micro-batch's forward and backward, the gradient norm,
the clip folded into the fused AdamW, the optimizer step) captured once as one CUDA graph and replayed.

Why: at GPT-2 small the GPU idles about 8% of a compiled step waiting for the host to launch kernels
(benchmarks/bench_gpu.py --profile); a replay launches the whole step at once. torch.compile's
"reduce-overhead" graphs only the compiled forward and backward; this covers the optimizer and the step's
small ops too. What makes it possible: one process, no host decision inside a step (bf16/fp32: fp16's loss
scale is decided on the host), the LR as a device tensor (AdamW's capturable mode), the batches copied into
static buffers before each replay. The first `warmup` steps run as ordinary steps on a side stream (as
capture requires); each is a real training step, so the run trains the same steps either way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gpt2core.data.loader import Batch

StepFn = Callable[[list[Batch]], tuple[torch.Tensor, torch.Tensor]]


class WholeStepGraph:
    """Runs `step_fn(batches) -> (loss, grad norm)` (which must also step the optimizer) as a replayed graph."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, warmup: int = 3) -> None:
        self.optimizer, self.device, self.warmup = optimizer, device, warmup
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        self.static: list[Batch] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.eager_steps = 0

    def run(self, batches: list[Batch], lr: float, step_fn: StepFn) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on `batches` at `lr`; returns (loss, norm) that the next step does not overwrite."""
        self.lr.fill_(lr)
        for group in self.optimizer.param_groups:  # again every step: a checkpoint load replaces the groups
            group["lr"], group["capturable"] = self.lr, True
        if self.static is None:
            self.static = [Batch(b.x.clone(), b.y.clone(), b.mask.clone()) for b in batches]
        for static, batch in zip(self.static, batches, strict=True):
            for dst, src in ((static.x, batch.x), (static.y, batch.y), (static.mask, batch.mask)):
                dst.copy_(src, non_blocking=True)
        if self.graph is None and self.eager_steps < self.warmup:
            return self._eager(step_fn)
        if self.graph is None:
            self._capture(step_fn)  # records the step without running it; the replay below runs it
        self.graph.replay()
        loss, norm = self.outputs
        return loss.clone(), norm.clone()

    def _eager(self, step_fn: StepFn) -> tuple[torch.Tensor, torch.Tensor]:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            loss, norm = step_fn(self.static)
            self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1
        return loss, norm

    def _capture(self, step_fn: StepFn) -> None:
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward writes (not adds to) fresh gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = step_fn(self.static)
