"""`train.liger_loss`: the output layer and cross-entropy through Liger-Kernel's fused linear cross-entropy
(Triton kernels, CUDA), which never writes the (tokens, V) logits: chunk by chunk it computes the logits, the
loss and both gradients in the forward, as `train.loss_chunk` does in torch, with hand-written kernels.

Why both: loss_chunk is ours, runs everywhere and compiles with the model; Liger is a maintained library whose
kernels do the softmax and its gradient in one pass over each chunk's logits. The measured one wins the default.
Masked positions (EOD inputs) become Liger's ignore_index, which is the same mean over counted positions.
Liger reads the count of counted positions back to the host every call (one sync a micro-batch).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gpt2core.training.lever_config import LIGER, import_optional

IGNORE_INDEX = -100


def liger_head(targets: torch.Tensor, mask: torch.Tensor | None,
               compute_dtype: torch.dtype) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A GPT.forward `head`: (final hidden states (..., C), output weight (vocab_size, C)) -> mean loss over
    unmasked positions, through Liger's fused linear cross-entropy in `compute_dtype` (fp32 softmax)."""
    flce = import_optional("liger_loss", LIGER, "liger_kernel.transformers.functional")
    t = targets.reshape(-1)
    if mask is not None:
        t = t.masked_fill(mask.reshape(-1) == 0, IGNORE_INDEX)

    def head(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return flce.liger_fused_linear_cross_entropy(
                hidden.reshape(-1, hidden.shape[-1]).to(compute_dtype), weight.to(compute_dtype), t,
                ignore_index=IGNORE_INDEX, reduction="mean", accum_dtype=torch.float32)

    return head
