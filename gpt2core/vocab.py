"""The one place the padded vocabulary size is computed (SPEC: 'Vocabulary padding').

Training pads the vocabulary to a multiple of `multiple * tp` so every tensor-parallel shard of the
embedding is equal and matmul-friendly. The result is stored in every checkpoint and export; readers take
it from there and never recompute it with other arguments.
"""

from __future__ import annotations


def padded_vocab_size(vocab_size: int, multiple: int = 128, tp: int = 1) -> int:
    """50,257 -> 50,304 at tp=1, 50,432 at tp=2, 50,688 at tp=4 (multiple 128)."""
    if vocab_size <= 0 or multiple <= 0 or tp <= 0:
        raise ValueError(f"vocab_size, multiple and tp must be positive, got {vocab_size}, {multiple}, {tp}")
    step = multiple * tp
    return ((vocab_size + step - 1) // step) * step
