"""GPT-2, single-device and readable (after nanoGPT's model.py). No parallelism in here: tensor and data
parallelism are applied from outside by gpt2core.parallel (torchtitan's pattern).

GPT-2 exactly: pre-LayerNorm blocks, learned positions, GELU (tanh), biases everywhere, tied input/output
embeddings, init std 0.02 and 0.02/sqrt(2*n_layer) on the two residual output projections. The vocabulary is
padded (gpt2core.vocab) and the padded ids get logit -inf, so they are never sampled and never carry
probability mass in a loss.

Shapes: B batch, T time, C n_embd, H heads, D = C // H, V padded vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gpt2core.vocab import padded_vocab_size


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257  # real tokenizer vocabulary
    padded_vocab_size: int = 50304  # rows of the embedding; from gpt2core.vocab.padded_vocab_size
    n_positions: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    vocab_multiple: int = 128  # the multiple padded_vocab_size was computed with (recorded, not re-applied)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.padded_vocab_size < self.vocab_size:
            raise ValueError(f"padded_vocab_size {self.padded_vocab_size} < vocab_size {self.vocab_size}")

    @classmethod
    def padded(cls, vocab_size: int, multiple: int = 128, tp: int = 1, **kw: object) -> GPTConfig:
        """A config whose padded vocabulary follows the SPEC rule for (vocab_size, multiple, tp)."""
        return cls(vocab_size=vocab_size, padded_vocab_size=padded_vocab_size(vocab_size, multiple, tp),
                   vocab_multiple=multiple, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


class _CPUDropout(torch.autograd.Function):
    """Dropout whose keep-mask comes from 64-bit random words, 16 bits per element, in float arithmetic:
    4x cheaper on CPU than `bernoulli_` (which costs more than the matmuls of a small model's step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # full 64-bit range
        u16 = bits.view(torch.int16)[:n].view(x.shape).float()  # uniform integers in [-32768, 32767], exact
        threshold = -32768 + round(p * 65536)  # P(u16 < threshold) = p, to 1/65536
        scale = 1.0 / (1.0 - p)
        # kept (u16 >= threshold): (u16 - threshold + 1) * scale >= scale -> clamped to scale; dropped: <= 0 -> 0
        mask = u16.add_(1.0 - threshold).mul_(scale).clamp_(0.0, scale).to(x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class Dropout(nn.Dropout):
    """nn.Dropout; on CPU the mask is drawn by _CPUDropout (same distribution, p rounded to 1/65536)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0 and x.device.type == "cpu" and type(x) is torch.Tensor:
            return _CPUDropout.apply(x, self.p)
        return super().forward(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.head_dim = cfg.n_embd // cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # q, k, v stacked on the output dim
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)  # residual projection
        self.attn_dropout = Dropout(cfg.dropout)  # on the attention weights (CPU training path only)
        self.resid_dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).chunk(3, dim=-1)  # (B, T, C) each; C is local under tensor parallelism
        # -1 heads: under tensor parallelism this rank holds only its share of the heads.
        q, k, v = (t.view(B, T, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if kv_cache is not None:  # (B, H, T_past + T, D)
            k, v = kv_cache.update(self, k, v)
        is_causal = kv_cache is None or T > 1
        if kv_cache is not None and T > 1 and k.shape[2] != T:
            raise ValueError("prefill with a KV cache must start from an empty cache")
        if self.training and self.dropout > 0 and q.device.type == "cpu" and kv_cache is None:
            y = self.attn_dropout(causal_attention_weights(q, k)) @ v  # SDPA's own path, faster dropout
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
            )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)  # residual projection
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embedding
        self.activation_checkpointing = False
        # The residual stream's dtype; None: the embeddings' (fp32 under autocast, nanoGPT's choice). The
        # trainer sets the autocast dtype for train.half_residual: the reference's fp16 weights keep the stream
        # in 16 bits, which halves what LayerNorm and the residual adds read and write. Autocast only.
        self.residual_dtype: torch.dtype | None = None
        # The blocks and ln_f as one function of (model, embeddings), set from outside by a speed lever
        # (gpt2core.training.fused_add_norm); None: the plain loop in forward. Never used with a KV cache.
        self.trunk: Callable[[GPT, torch.Tensor], torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02) everywhere, N(0, 0.02/sqrt(2 L)) on residual projections, zero biases."""
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = resid_std if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Unique parameters (the tied embedding counted once); optionally without position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(
        self, idx: torch.Tensor, kv_cache: KVCache | None = None, start_pos: int = 0,
        head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V); padded ids have logit -inf. With `head`, returns
        head(final hidden states (B, T, C), output weight's real-vocabulary rows (vocab_size, C)) instead: a
        loss that never writes the logits (gpt2core.training.linear_cross_entropy) runs inside forward, where
        data-parallel wrappers expect the weights to be used."""
        _, T = idx.shape
        if start_pos + T > self.config.n_positions:
            raise ValueError(f"sequence of {start_pos + T} exceeds n_positions {self.config.n_positions}")
        pos = torch.arange(start_pos, start_pos + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        if self.residual_dtype is not None:
            x = x.to(self.residual_dtype)  # the blocks' outputs are already in it under autocast
        if self.trunk is not None and kv_cache is None:
            x = self.trunk(self, x)
        else:
            for block in self.h:
                if self.activation_checkpointing and self.training and kv_cache is None:
                    x = checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x, kv_cache)
            x = self.ln_f(x)
        if head is not None:
            return head(x, self.lm_head.weight[: self.config.vocab_size])
        logits = self.lm_head(x)  # (B, T, V)
        return mask_padded_logits(logits, self.config.vocab_size)


def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) with future positions masked: (B, H, T, D) x2 -> (B, H, T, T)."""
    T = q.shape[-2]
    future = torch.full((T, T), float("-inf"), device=q.device, dtype=q.dtype).triu_(1)  # additive mask
    return torch.baddbmm(future, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2),
                         alpha=1.0 / math.sqrt(q.shape[-1])).view(*q.shape[:-1], T).softmax(dim=-1)


def mask_padded_logits(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Set logits of padded ids (>= vocab_size) to -inf; a no-op when nothing is padded."""
    if logits.shape[-1] == vocab_size:
        return logits
    pad = torch.arange(logits.shape[-1], device=logits.device) >= vocab_size
    return logits.masked_fill(pad, float("-inf"))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in fp32 over unmasked positions (mask: 1 = counted)."""
    losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    if mask is None:
        return losses.mean()
    mask = mask.flatten().to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


class KVCache:
    """Per-layer key/value tensors for incremental decoding: (B, H, T_max, D) buffers filled left to right."""

    def __init__(self) -> None:
        self._store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, layer: nn.Module, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = id(layer)
        if key in self._store:
            past_k, past_v = self._store[key]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self._store[key] = (k, v)
        return k, v

    def __len__(self) -> int:
        """Number of cached positions."""
        if not self._store:
            return 0
        return next(iter(self._store.values()))[0].shape[2]
