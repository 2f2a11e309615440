"""Build `tokenizer.json`: OpenAI's GPT-2 BPE from encoder.json + vocab.bpe, or a byte-level BPE trained
on the presplit corpus. Both are plain `tokenizers` files (they load in `transformers` too) whose EOD is
`<|endoftext|>`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from gpt2core.data.encoder import EOD
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path, sha256_file

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
        vocab = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WikiGPTError(f"{encoder_json}: not a GPT-2 encoder.json ({exc})") from None
    merges = []
    for lineno, line in enumerate(Path(vocab_bpe).read_text(encoding="utf-8").splitlines(), 1):
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


def corpus_sample(parquet_files: list[str], sample_bytes: int) -> Iterator[str]:
    """Texts from presplit shards, up to `sample_bytes` of UTF-8 in total, taken evenly from every shard."""
    if not parquet_files:
        return
    per_shard = max(1, sample_bytes // len(parquet_files))
    for path in parquet_files:
        taken = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["text"]):
            for text in batch.column(0).to_pylist():
                if taken >= per_shard:
                    break
                taken += len(text.encode("utf-8"))
                yield text
            if taken >= per_shard:
                break


def train_bpe(corpora: list[list[str]], out: str | Path, vocab_size: int, min_frequency: int,
              sample_bytes: int) -> dict:
    """Train a byte-level BPE on a sample of each corpus (a list of its presplit shard files)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    _byte_level(tok)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    seen = {"bytes": 0, "documents": 0}

    def texts() -> Iterator[str]:
        for files in corpora:
            for text in corpus_sample(files, sample_bytes):
                seen["bytes"] += len(text.encode("utf-8"))
                seen["documents"] += 1
                yield text

    tok.train_from_iterator(texts(), trainer=trainer)
    if seen["documents"] == 0:
        raise WikiGPTError(f"no text to train the tokenizer on (presplit shards: {sum(map(len, corpora))})")
    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    return {"vocab_size": tok.get_vocab_size(), "eod_id": tok.token_to_id(EOD), **seen}
