"""Bounds on the model sizes a file may ask for, checked before anything is allocated.

Why: readers build tensors from sizes stored in files (config.json of an export, model_config in a
checkpoint's meta.json). An absurd value there (say a padded vocabulary of 10^14) made a reader try to
allocate hundreds of terabytes and die in a traceback or the OOM killer; it is a one-line error naming the
file and key instead. The bounds are far above any GPT-2 this project trains (GPT-2 XL: 1.5 B parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gpt2core.errors import WikiGPTError

MAX = {"vocab_size": 1 << 22, "padded_vocab_size": 1 << 22, "n_positions": 1 << 20, "n_layer": 1024,
       "n_head": 1 << 12, "n_embd": 1 << 16}
MAX_PARAMETERS = 1 << 36  # ~69 B: 275 GB in fp32


def parameter_count(vocab: int, n_positions: int, n_layer: int, n_embd: int) -> int:
    """GPT-2 parameters (tied head): embeddings, blocks (attention, MLP, LayerNorms, biases), final LayerNorm."""
    return vocab * n_embd + n_positions * n_embd + n_layer * (12 * n_embd * n_embd + 13 * n_embd) + 2 * n_embd


def check_model_size(sizes: Mapping[str, object], source: str | Path, names: Mapping[str, str] | None = None) -> None:
    """Raise WikiGPTError naming `source` and the key (as the file spells it, via `names`) when a size is not
    an integer in 1..MAX, or the whole model would exceed MAX_PARAMETERS. Keys absent from `sizes` are
    skipped (their readers check presence)."""
    names = names or {}
    values: dict[str, int] = {}
    for key, limit in MAX.items():
        if key not in sizes:
            continue
        value = sizes[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise WikiGPTError(f"{source}: {names.get(key, key)} {value!r} is not an integer in 1..{limit}")
        values[key] = value
    if {"n_positions", "n_layer", "n_embd"} <= values.keys() and ("padded_vocab_size" in values
                                                                   or "vocab_size" in values):
        vocab = values.get("padded_vocab_size", values.get("vocab_size", 0))
        count = parameter_count(vocab, values["n_positions"], values["n_layer"], values["n_embd"])
        if count > MAX_PARAMETERS:
            raise WikiGPTError(f"{source}: a model of {count:,} parameters (from its {names.get('n_embd', 'n_embd')}, "
                               f"{names.get('n_layer', 'n_layer')}, vocabulary and positions) exceeds "
                               f"{MAX_PARAMETERS:,}")


def check_tensor_bytes(total: int, source: str | Path) -> None:
    """Tensors a file's header asks a reader to allocate, bounded like the parameters (fp32 and AdamW's two
    moments: 3 x 4 bytes a parameter)."""
    if total > 12 * MAX_PARAMETERS:
        raise WikiGPTError(f"{source}: its tensors would take {total:,} bytes, more than a model of "
                           f"{MAX_PARAMETERS:,} parameters and its optimizer state")
