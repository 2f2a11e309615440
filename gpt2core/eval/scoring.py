"""Logits at chosen positions, from our GPT (fast path) or any model that maps ids to logits.

Why a fast path: the reference's WikiText-103 method scores only the last `overlap` (32) targets of each
window, yet a plain forward projects every position onto the whole vocabulary. For our GPT we run the
blocks, keep the hidden states of the scored positions, and project only those onto the real (unpadded)
vocabulary. Any other callable (a `transformers` model, a test model) takes the plain path; the numbers are
the same, which tests check against the model's own forward and against `GPT2LMHeadModel`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gpt2core.model import GPT

# idx (B, T) token ids, positions (B, K) indices into T -> logits (B, K, V) with V >= the real vocabulary.
LogitsAt = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gpt_logits_at(model: GPT) -> LogitsAt:
    """Our GPT: hidden states of all positions, LayerNorm and the tied head at `positions` only.

    The head uses the first `vocab_size` rows of the embedding: padded ids are excluded by construction,
    which is what the model's -inf mask does in its own forward.
    """
    vocab = model.config.vocab_size

    def logits_at(idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > model.config.n_positions:
            raise ValueError(f"window of {T} tokens exceeds n_positions {model.config.n_positions}")
        pos = torch.arange(T, device=idx.device)
        x = model.drop(model.wte(idx) + model.wpe(pos))  # (B, T, C)
        for block in model.h:
            x = block(x)
        x = torch.gather(x, 1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, K, C)
        return model.ln_f(x) @ model.wte.weight[:vocab].t()  # (B, K, vocab)

    return logits_at


def forward_logits_at(forward: Callable[[torch.Tensor], torch.Tensor]) -> LogitsAt:
    """Any ids -> (B, T, V) logits function (e.g. `lambda idx: hf_model(idx).logits`): full forward, gather."""

    def logits_at(idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits = forward(idx)  # (B, T, V)
        return torch.gather(logits, 1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

    return logits_at


def logits_at_for(model: nn.Module | Callable[[torch.Tensor], torch.Tensor]) -> LogitsAt:
    """The fast path for our GPT, the plain path for anything else."""
    return gpt_logits_at(model) if isinstance(model, GPT) else forward_logits_at(model)


def target_losses(logits: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Natural-log cross-entropy (B, K) in fp32 over the real vocabulary only."""
    logits = logits[..., :vocab_size].float()
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), reduction="none"
    ).view(targets.shape)
