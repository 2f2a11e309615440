"""`load_encoder`: encode text exactly as `results/tokenizer/tokenizer.json` does, as fast as possible.

HF `tokenizers` encodes ~3 MB/s per thread; a `tiktoken` Encoding built from the same byte-level BPE
(vocabulary ids as merge ranks, GPT-2's pre-tokenizer regex) runs ~5x faster. The two are equivalent only
when every merge creates a new token whose id grows with the merge's priority, so the tiktoken encoder is
used only after it gives the same ids as `tokenizers` on a probe (a mixed-language text plus the text of
every vocabulary entry); otherwise `tokenizers` itself is used.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from gpt2core.errors import WikiGPTError

EOD = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PROBE = (
    "The quick brown fox's 3 jumps (1,234.5 m) over the lazy dog. It's 100% true -- isn't it?\n\n"
    "  Indented  text\twith tabs\r\nand CRLF. Ünïcödé: naïve café, Zürich; Ελληνικά; русский текст; "
    "中文句子。日本語の文、한국어 문장! émoji 🙂👍🏽 and symbols: €£¥ ±×÷ → ∞ ≠ ≤.\n"
    "URLs https://en.wikipedia.org/wiki/GPT-2?x=1&y=2 #tags @user 'quoted' \"double\" `code` 1990s 's 'll 've\n"
)


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable character standing for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class Encoder:
    """Encode/decode with one tokenizer; `backend` says which library does the work."""

    def __init__(self, hf, tiktoken_enc=None) -> None:
        self.hf = hf
        self.tiktoken = tiktoken_enc
        self.backend = "tiktoken" if tiktoken_enc is not None else "tokenizers"
        eod = hf.token_to_id(EOD)
        if eod is None:
            raise WikiGPTError(f"tokenizer has no {EOD} token")
        self.eod_id: int = eod
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """Ids of each text (no EOD added; special-token strings inside a text are ordinary text)."""
        if self.tiktoken is not None:
            if num_threads <= 1:
                return [self.tiktoken.encode_ordinary(t) for t in texts]
            return self.tiktoken.encode_ordinary_batch(texts, num_threads=num_threads)
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.tiktoken is not None:
            return self.tiktoken.decode(ids)
        return self.hf.decode(ids, skip_special_tokens=False)


def _is_plain_byte_level(spec: dict) -> bool:
    """True when tokenizer.json is a byte-level BPE with GPT-2's pre-tokenizer and nothing else around it."""
    model = spec.get("model") or {}
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    return (model.get("type") == "BPE" and not spec.get("normalizer") and pre.get("type") == "ByteLevel"
            and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
            and not model.get("byte_fallback") and not model.get("dropout")
            and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix"))


def _build_tiktoken(spec: dict, name: str):
    import tiktoken

    decoder = byte_decoder()
    try:
        ranks = {bytes(decoder[ch] for ch in tok): int(i) for tok, i in spec["model"]["vocab"].items()}
    except KeyError:
        return None  # a vocabulary entry outside the byte alphabet: not a byte-level vocabulary
    specials = {t["content"]: int(t["id"]) for t in spec.get("added_tokens", []) if t.get("special")}
    for content, i in specials.items():
        ranks = {b: r for b, r in ranks.items() if r != i or b != content.encode()}
    return tiktoken.Encoding(name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def _agrees(hf, enc, texts: list[str]) -> bool:
    got = [enc.encode_ordinary(t) for t in texts]
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    return got == want


def load_encoder(tokenizer_json: str | Path, prefer_tiktoken: bool = True) -> Encoder:
    """The encoder for `tokenizer_json`: tiktoken when it is checked to give identical ids, else tokenizers."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_json)
    try:
        text = path.read_text(encoding="utf-8")
        hf = Tokenizer.from_str(text)
        spec = json.loads(text)
    except (OSError, ValueError, Exception) as exc:  # tokenizers raises its own Exception type
        raise WikiGPTError(f"{path}: cannot load tokenizer ({exc})") from None
    enc = None
    if prefer_tiktoken and _is_plain_byte_level(spec):
        enc = _build_tiktoken(spec, path.stem)
        if enc is not None:
            special = {t["content"] for t in spec.get("added_tokens", [])}
            vocab_texts = [hf.decode([i]) for i in range(hf.get_vocab_size())]
            probe = [PROBE] + [t for t in vocab_texts if t and t not in special and "\ufffd" not in t]
            if not _agrees(hf, enc, probe):
                enc = None
    return Encoder(hf, enc)
