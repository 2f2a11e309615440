"""`train.liger_loss`: the output layer and cross-entropy through Liger-Kernel's fused linear cross-entropy
(Triton kernels, CUDA), which never writes the (tokens, V) logits: chunk by chunk it computes the logits, the
loss and both gradients in the forward, as `train.loss_chunk` does in torch, with hand-written kernels.

Why both: loss_chunk is ours, runs everywhere and compiles with the model; Liger is a maintained library whose
kernels do the softmax and its gradient in one pass over each chunk's logits. The measured one wins the default.
Masked positions (EOD inputs) become Liger's ignore_index, which is the same mean over counted positions.
Liger reads the count of counted positions back to the host every call (one sync a micro-batch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from gpt2core.training.optional_packages import LIGER, import_optional

IGNORE_INDEX = -100


class LigerLoss:
    """GPT.forward `head`s through Liger's fused linear cross-entropy in `compute_dtype` (fp32 softmax);
    liger-kernel is imported here, when the trainer is built, so a missing package stops the run at once."""

    def __init__(self, compute_dtype: torch.dtype, flce: Callable[..., torch.Tensor] | None = None) -> None:
        """`flce`: a function with liger_fused_linear_cross_entropy's signature (tests pass torch's own
        F.linear + F.cross_entropy, which Liger's kernels compute, where Triton cannot run); None: Liger's."""
        if flce is None:
            functional = import_optional("liger_loss", LIGER, "liger_kernel.transformers.functional")
            flce = functional.liger_fused_linear_cross_entropy
        self.flce, self.compute_dtype = flce, compute_dtype

    def head(self, targets: torch.Tensor,
             mask: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(final hidden states (..., C), output weight (vocab_size, C)) -> mean loss over unmasked positions."""
        t = targets.reshape(-1)
        if mask is not None:
            t = t.masked_fill(mask.reshape(-1) == 0, IGNORE_INDEX)
        return functools.partial(self._loss, targets=t)

    @torch.compiler.disable  # its host read would break the graph anyway; the model up to ln_f stays compiled
    def _loss(self, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return self.flce(hidden.reshape(-1, hidden.shape[-1]).to(self.compute_dtype),
                             weight.to(self.compute_dtype), targets, ignore_index=IGNORE_INDEX, reduction="mean",
                             accum_dtype=torch.float32)
