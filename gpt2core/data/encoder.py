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
CHECK_FILE = "tiktoken_check.json"
# Largest tokenizer.json (and encoder.json/vocab.bpe) read: loading takes tens of times a file's size in
# memory (a 150 MB file took a process to 22.9 GB); GPT-2's is 1.4 MB, a 256k vocabulary about 35 MB.
MAX_TOKENIZER_BYTES = 64 << 20
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


def probe_agrees(hf, spec: dict, name: str):
    """The tiktoken Encoding for `spec` if it gives the same ids as `hf` on the probe, else None."""
    if not _is_plain_byte_level(spec):
        return None
    enc = _build_tiktoken(spec, name)
    if enc is None:
        return None
    special = {t["content"] for t in spec.get("added_tokens", [])}
    vocab_texts = hf.decode_batch([[i] for i in range(hf.get_vocab_size())], skip_special_tokens=False)
    probe = [PROBE] + [t for t in vocab_texts if t and t not in special and "\ufffd" not in t]
    return enc if _agrees(hf, enc, probe) else None


def write_check(tokenizer_json: str | Path, out: str | Path) -> dict:
    """Run the probe once (in the tokenizer stage) and record its verdict beside the tokenizer."""
    from tokenizers import Tokenizer

    from gpt2core.fsutil import read_limited, sha256_file, write_text_atomic

    text = read_limited(tokenizer_json, MAX_TOKENIZER_BYTES, "a tokenizer file").decode("utf-8")
    agrees = probe_agrees(Tokenizer.from_str(text), json.loads(text), Path(tokenizer_json).stem) is not None
    verdict = {"tokenizer_sha256": sha256_file(tokenizer_json), "tiktoken_agrees": agrees}
    write_text_atomic(out, json.dumps(verdict) + "\n")
    return verdict


def _recorded_verdict(path: Path, raw: bytes) -> bool | None:
    """The verdict in `tiktoken_check.json` beside `path`, if it was made for exactly this file."""
    import hashlib

    check = path.with_name(CHECK_FILE)
    try:
        verdict = json.loads(check.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if verdict.get("tokenizer_sha256") != hashlib.sha256(raw).hexdigest():
        return None
    return bool(verdict.get("tiktoken_agrees"))


def load_encoder(tokenizer_json: str | Path, prefer_tiktoken: bool = True) -> Encoder:
    """The encoder for `tokenizer_json`: tiktoken when it is checked to give identical ids, else tokenizers.

    The check is the probe above; its verdict is taken from `tiktoken_check.json` beside the file when
    that was written for the same bytes (the tokenizer stage writes it), so workers skip the probe.
    """
    from tokenizers import Tokenizer

    from gpt2core.fsutil import read_limited

    path = Path(tokenizer_json)
    raw = read_limited(path, MAX_TOKENIZER_BYTES, "a tokenizer file")
    try:
        text = raw.decode("utf-8")
        hf = Tokenizer.from_str(text)
        spec = json.loads(text)
    except Exception as exc:  # OSError, ValueError, or tokenizers' own Exception type
        raise WikiGPTError(f"{path}: cannot load tokenizer ({exc})") from None
    if not prefer_tiktoken:
        return Encoder(hf, None)
    recorded = _recorded_verdict(path, raw)
    if recorded is False:
        return Encoder(hf, None)
    if recorded is True:
        return Encoder(hf, _build_tiktoken(spec, path.stem))
    return Encoder(hf, probe_agrees(hf, spec, path.stem))
