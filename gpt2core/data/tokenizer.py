"""Build `tokenizer.json`: OpenAI's GPT-2 BPE from encoder.json + vocab.bpe, or a byte-level BPE trained
on the presplit corpus. Both are plain `tokenizers` files (they load in `transformers` too) whose EOD is
`<|endoftext|>`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from gpt2core.data.encoder import EOD, MAX_TOKENIZER_BYTES
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path, read_limited, sha256_file

# OpenAI's published GPT-2 files (also pinned in configs/gpt2-small-enwiki.yaml); reported in the log so a
# run on other files under the same names is visible.
GPT2_SHA256 = {"encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
               "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"}


def _byte_level(tok) -> None:
    from tokenizers import decoders, pre_tokenizers, processors

    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)


def build_gpt2(encoder_json: str | Path, vocab_bpe: str | Path, out: str | Path) -> dict:
    """GPT-2's own files -> tokenizer.json (ids unchanged: `<|endoftext|>` stays 50256)."""
    from tokenizers import Tokenizer, models

    try:
        vocab = json.loads(read_limited(encoder_json, MAX_TOKENIZER_BYTES, "a GPT-2 encoder.json"))
    except (ValueError, RecursionError) as exc:
        raise WikiGPTError(f"{encoder_json}: not a GPT-2 encoder.json ({type(exc).__name__}: "
                           f"{str(exc)[:100]})") from None
    if not isinstance(vocab, dict):
        raise WikiGPTError(f"{encoder_json}: not a GPT-2 encoder.json (not a JSON object)")
    try:
        bpe_lines = read_limited(vocab_bpe, MAX_TOKENIZER_BYTES, "a GPT-2 vocab.bpe").decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise WikiGPTError(f"{vocab_bpe}: invalid UTF-8 at byte {exc.start}") from None
    merges = []
    for lineno, line in enumerate(bpe_lines, 1):
        if lineno == 1 and line.startswith("#version") or not line.strip():
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise WikiGPTError(f"{vocab_bpe}:{lineno}: not a merge line: {line[:60]!r}")
        merges.append((pair[0], pair[1]))
    if EOD not in vocab:
        raise WikiGPTError(f"{encoder_json}: no {EOD} entry")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    _byte_level(tok)
    tok.add_special_tokens([EOD])
    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    official = (sha256_file(encoder_json) == GPT2_SHA256["encoder.json"]
                and sha256_file(vocab_bpe) == GPT2_SHA256["vocab.bpe"])
    return {"vocab_size": tok.get_vocab_size(), "merges": len(merges), "eod_id": tok.token_to_id(EOD),
            "openai_gpt2_files": official}


HELDOUT_ONE_IN = 10  # documents whose id hashes to 0 mod this are never trained on: held-out text
HELDOUT_CHARS = 1_000_000  # per language, enough for a stable characters-per-token figure
HELDOUT_SMALL = (20, 100_000)  # fewer documents or characters than this: the figure is warned about


def is_heldout(doc_id: str) -> bool:
    """Whether a document is held out of tokenizer training (a hash of its id only)."""
    h = hashlib.blake2b(f"tokenizer-heldout\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % HELDOUT_ONE_IN == 0


def corpus_sample(parquet_files: list[str], sample_bytes: int, heldout: list[str] | None = None,
                  heldout_chars: int = HELDOUT_CHARS) -> Iterator[str]:
    """Texts from presplit shards, up to `sample_bytes` of UTF-8 in total, taken evenly from every shard.

    Held-out documents (is_heldout) are skipped; when `heldout` is a list, up to `heldout_chars` of their
    text is appended to it, for measuring the tokenizer on text it never saw.
    """
    if not parquet_files:
        return
    per_shard = max(1, sample_bytes // len(parquet_files))
    held_per_shard = max(1, heldout_chars // len(parquet_files))
    for path in parquet_files:
        taken = held = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["id", "text"]):
            for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if is_heldout(doc_id):
                    if heldout is not None and held < held_per_shard:
                        heldout.append(text)
                        held += len(text)
                    continue
                if taken >= per_shard:
                    if heldout is None or held >= held_per_shard:
                        break
                    continue
                if len(text) > per_shard:  # one huge page must not pull megabytes past the budget
                    text = text[:per_shard].encode("utf-8")[:per_shard].decode("utf-8", "ignore")
                taken += len(text.encode("utf-8"))
                yield text
            else:
                continue
            break


def chars_per_token(tok, texts: list[str]) -> dict:
    """Characters per token of `texts` under `tok` (a tokenizers.Tokenizer), with the sizes measured."""
    chars = sum(len(t) for t in texts)
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return {"chars_per_token": round(chars / tokens, 4) if tokens else None, "documents": len(texts),
            "chars": chars, "tokens": tokens}


TRAIN_PIECE_CHARS = 1 << 20
# Where a text may be cut without changing what the byte-level pre-tokenizer makes of it: before a space
# that starts a word after a non-space (" word" is one pre-token either way), or after a newline between
# non-spaces (a longer whitespace run is split differently at the end of a string: "  \n\n" is one
# pre-token there, "  \n", "\n" before a word).
_SAFE_CUT = re.compile(r"(?<=\S)(?= \S)|(?<=\S\n)(?=\S)")


def training_pieces(text: str, size: int = TRAIN_PIECE_CHARS) -> Iterator[str]:
    """`text` in pieces of about `size` characters, cut only where the pre-tokenizer sees the same words as
    in the whole text (so the trained tokenizer is the same): its memory grows with the string it is given,
    and one 200 MB page took tokenizer training to 4.4 GB. A text with no such place stays whole."""
    start = 0
    while len(text) - start > size:
        cut = _SAFE_CUT.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.start()]
        start = cut.start()
    yield text[start:]


def heldout_figure(tok, texts: list[str], lang: str) -> dict:
    """chars_per_token on the held-out texts of `lang`, with a warning when they are too few to trust."""
    figure = chars_per_token(tok, texts)
    if figure["documents"] < HELDOUT_SMALL[0] or figure["chars"] < HELDOUT_SMALL[1]:
        figure["warning"] = (f"warning: tokenizer held-out {lang}: {figure['documents']} documents, "
                             f"{figure['chars']} characters; characters per token on so little text is rough "
                             f"(wanted {HELDOUT_SMALL[0]} documents and {HELDOUT_SMALL[1]} characters)")
    return figure


def sample_budgets(sample_bytes: int, weights: list[float]) -> list[int]:
    """Bytes each corpus gives the tokenizer: `sample_bytes` for the heaviest, in proportion for the rest."""
    top = max(weights)
    return [max(1, int(sample_bytes * w / top)) for w in weights]


def train_bpe(corpora: list[list[str]], out: str | Path, vocab_size: int, min_frequency: int,
              sample_bytes: int, weights: list[float] | None = None, langs: list[str] | None = None,
              piece_chars: int = TRAIN_PIECE_CHARS) -> dict:
    """Train a byte-level BPE on a weighted sample of each corpus (a list of its presplit shard files).

    Corpus i contributes up to sample_bytes * weights[i] / max(weights) bytes (all `sample_bytes` when no
    weights are given). Held-out documents of every corpus measure characters per token per language.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    weights = weights or [1.0] * len(corpora)
    langs = langs or ["en"] * len(corpora)
    if not (len(weights) == len(langs) == len(corpora)):
        raise ValueError("train_bpe: one weight and one language per corpus")
    tok = Tokenizer(models.BPE())
    _byte_level(tok)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    seen = {"bytes": 0, "documents": 0}
    per_corpus: list[dict] = []
    heldout: dict[str, list[str]] = {}

    def texts() -> Iterator[str]:
        for files, budget, lang in zip(corpora, sample_budgets(sample_bytes, weights), langs, strict=True):
            got = {"bytes": 0, "documents": 0}
            per_corpus.append(got)
            held = heldout.setdefault(lang, [])
            cap = max(0, HELDOUT_CHARS - sum(len(t) for t in held))
            for text in corpus_sample(files, budget, held, cap):
                n = len(text.encode("utf-8"))
                seen["bytes"] += n
                seen["documents"] += 1
                got["bytes"] += n
                got["documents"] += 1
                yield from training_pieces(text, piece_chars)

    tok.train_from_iterator(texts(), trainer=trainer)
    if seen["documents"] == 0:
        raise WikiGPTError(f"no text to train the tokenizer on (presplit shards: {sum(map(len, corpora))})")
    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    measured = {lang: heldout_figure(tok, texts, lang) for lang, texts in sorted(heldout.items()) if texts}
    return {"vocab_size": tok.get_vocab_size(), "eod_id": tok.token_to_id(EOD), **seen,
            "sample": per_corpus, "heldout": measured}
