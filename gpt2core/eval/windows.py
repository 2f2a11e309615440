"""The reference's WikiText-103 windows (Megatron-LM `_LMDataset` with `overlapping_eval`).

Window k holds tokens [k*overlap, k*overlap + seq_len] (seq_len + 1 tokens, padded past the end), i.e.
seq_len inputs and seq_len targets. Window 0 scores all its targets; every later window scores only its last
`overlap` targets, so target t (1 <= t < N) is scored once: by window 0 if t <= seq_len, else by window
ceil((t - seq_len) / overlap), with at least seq_len - overlap tokens of context. The reference also builds
trailing windows whose scored part lies wholly in the padding; they add nothing and are not built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowPlan:
    n_tokens: int
    seq_len: int
    overlap: int

    def __post_init__(self) -> None:
        if self.n_tokens < 2:
            raise ValueError(f"need at least 2 tokens to score, got {self.n_tokens}")
        if self.seq_len < 1 or not 1 <= self.overlap <= self.seq_len:
            raise ValueError(f"need 1 <= overlap ({self.overlap}) <= seq_len ({self.seq_len})")

    @property
    def n_windows(self) -> int:
        """Windows with at least one scored target."""
        rest = self.n_tokens - 1 - self.seq_len  # targets after window 0
        return 1 + max(0, -(-rest // self.overlap))

    @property
    def reference_windows(self) -> int:
        """The count the reference iterates over (including its all-padding tail windows)."""
        targets = max(self.n_tokens - 1 - self.overlap, 0)
        return max(-(-targets // self.overlap) + 1, 1)

    def start(self, k: int) -> int:
        return k * self.overlap

    def scored_from(self, k: int) -> int:
        """Index (within the window's seq_len targets) of the first scored target."""
        return 0 if k == 0 else self.seq_len - self.overlap

    def batch(self, tokens: torch.Tensor, ks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
        """For windows `ks` (all 0, or all > 0): inputs (B, seq_len), positions (B, K) of the scored targets,
        targets (B, K) and mask (B, K) (0 where the window ran past the end of the text)."""
        if len({self.scored_from(k) for k in ks}) != 1:
            raise ValueError("window 0 and later windows score different spans; batch them apart")
        T, lo = self.seq_len, self.scored_from(ks[0])
        inputs = torch.zeros(len(ks), T, dtype=torch.long)
        targets = torch.zeros(len(ks), T - lo, dtype=torch.long)
        mask = torch.zeros(len(ks), T - lo, dtype=torch.bool)
        for row, k in enumerate(ks):
            chunk = tokens[self.start(k): self.start(k) + T + 1]
            n = chunk.numel() - 1  # real targets in this window
            inputs[row, : n] = chunk[:-1]
            if n > lo:
                targets[row, : n - lo] = chunk[lo + 1:]
                mask[row, : n - lo] = True
        positions = torch.arange(lo, T).expand(len(ks), -1)
        return inputs, positions, targets, mask

    def batches(self, batch_size: int) -> list[list[int]]:
        """Window 0 alone (it scores seq_len targets), then the rest in groups of batch_size."""
        rest = list(range(1, self.n_windows))
        return [[0]] + [rest[i: i + batch_size] for i in range(0, len(rest), batch_size)]
