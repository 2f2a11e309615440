"""Text -> token ids with the model's own tokenizer (results/model/tokenizer.json).

Uses the data engineer's `gpt2core.data.load_encoder` (tiktoken-backed when it gives identical ids, for
speed) when that package is present, else HF `tokenizers`; both read the same tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpt2core.errors import WikiGPTError

Encode = Callable[[list[str]], list[list[int]]]


def load_encode(tokenizer_json: str | Path) -> Encode:
    """A batch encoder: list of texts -> list of id lists, no special tokens added."""
    path = Path(tokenizer_json)
    if not path.is_file():
        raise WikiGPTError(f"{path}: tokenizer file missing")
    try:
        from gpt2core.data import load_encoder  # type: ignore[attr-defined]
    except ImportError:
        load_encoder = None
    if load_encoder is not None:
        encoder = load_encoder(str(path))
        return lambda texts: [list(ids) for ids in encoder.encode_batch(list(texts))]
    from tokenizers import Tokenizer

    from gpt2core.data.encoder import MAX_TOKENIZER_BYTES
    from gpt2core.fsutil import read_limited

    raw = read_limited(path, MAX_TOKENIZER_BYTES, "a tokenizer file")
    try:
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise WikiGPTError(f"{path}: not a tokenizers JSON file ({exc})") from None
    return lambda texts: [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
