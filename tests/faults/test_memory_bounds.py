"""Memory bounded whatever the input's shape: a long paragraph is cut before the sentence splitter (counted),
a line past limits.max_line_bytes and JSON that Python cannot hold (a lone surrogate, deep nesting) are
one-line errors naming file and line. The peak-RSS figure is benchmarks/bench_long_paragraph.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gpt2core.data.presplit import presplit_shard, shard_stats
from gpt2core.data.sentences import split_sentences
from gpt2core.errors import WikiGPTError

SENTENCE = "The mill by the river was built long ago and nobody remembers who built it. "


def test_a_paragraph_longer_than_the_limit_is_cut_counted_and_keeps_every_word() -> None:
    text = "A short first paragraph.\n" + SENTENCE * 200 + "\nA short last one."
    cuts: Counter = Counter()
    out = split_sentences(text, piece_chars=1000, max_paragraph_chars=2000, cuts=cuts)
    assert cuts["paragraph_cuts"] >= len(SENTENCE) * 200 // 2000
    assert out.split() == text.split()  # cut between sentences: nothing lost, nothing glued
    assert max(map(len, out.split("\n"))) <= 2000


def test_an_endless_word_is_cut_at_the_limit() -> None:
    cuts: Counter = Counter()
    out = split_sentences("x" * 10_000, max_paragraph_chars=3000, cuts=cuts)
    assert cuts["paragraph_cuts"] == 3 and out.replace("\n", "") == "x" * 10_000


def test_paragraphs_within_the_limit_are_not_cut_and_split_as_before() -> None:
    text = (SENTENCE * 10 + "\n") * 50
    cuts: Counter = Counter()
    assert split_sentences(text, piece_chars=500, max_paragraph_chars=2000, cuts=cuts) == split_sentences(text)
    assert cuts["paragraph_cuts"] == 0


def _extract(tmp_path: Path, lines: list[bytes]) -> Path:
    folder = tmp_path / "extract"
    (folder / "AA").mkdir(parents=True)
    (folder / "AA" / "wiki_00").write_bytes(b"".join(lines))
    return folder


def _article(i: int, text: str) -> bytes:
    return (json.dumps({"id": str(i), "title": f"T{i}", "url": "", "text": text}) + "\n").encode()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_presplit_counts_its_paragraph_cuts(tmp_path: Path, lang: str) -> None:
    body = SENTENCE * 300 if lang == "en" else "河边的磨坊是很久以前建的，没有人记得是谁建的。" * 600
    folder = _extract(tmp_path, [_article(1, body)])
    stats = presplit_shard([("p", folder)], tmp_path / "out.parquet", 0, 1, lang=lang, max_paragraph_chars=4096)
    assert stats["paragraph_cuts"] >= 2 and shard_stats(tmp_path / "out.parquet")["paragraph_cuts"] >= 2
    text = pq.read_table(tmp_path / "out.parquet").column("text")[0].as_py()
    assert "".join(text.split()) == "".join(body.split())
    assert all(line.endswith((".", "。")) for line in text.split("\n"))  # cut between sentences


def test_a_line_past_max_line_bytes_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    folder = _extract(tmp_path, [_article(1, "fine " * 100), _article(2, SENTENCE * 2000)])
    with pytest.raises(WikiGPTError, match=r"wiki_00:2: a line longer than 100000 bytes"):
        presplit_shard([("p", folder)], tmp_path / "out.parquet", 0, 1, max_line_bytes=100_000)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("bad, expect", [
    (b'{"id": "2", "title": "S", "url": "", "text": "a\\ud800b"}\n', "lone surrogate"),
    (b'{"id": "2", "title": "S", "url": "", "text": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     "nested too deeply"),
])
def test_json_python_cannot_hold_is_one_line_naming_file_and_line(tmp_path: Path, bad: bytes, expect: str) -> None:
    folder = _extract(tmp_path, [_article(1, "fine " * 100), bad])
    with pytest.raises(WikiGPTError, match=rf"wiki_00:2: .*{expect}"):
        presplit_shard([("p", folder)], tmp_path / "out.parquet", 0, 1)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.e2e
def test_the_workflow_gives_presplit_its_limits(tmp_path: Path) -> None:
    """limits.max_line_bytes reaches presplit: one line naming the extracted file and its line."""
    from conftest import run_snakemake, tiny_config, write_config

    write_config(tmp_path, tiny_config(limits={"max_line_bytes": 1024, "max_paragraph_chars": 4096}))
    proc = run_snakemake(tmp_path, "data/presplit/samplewiki/00000.parquet", check=False)
    errors = {ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")}
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    line = errors.pop()
    assert "data/extract/samplewiki/" in line and "a line longer than 1024 bytes" in line
    assert not (tmp_path / "data/presplit/samplewiki/00000.parquet").exists()


def test_a_tokenizer_file_past_the_limit_is_one_line_before_it_is_parsed(tmp_path: Path) -> None:
    from gpt2core.data.encoder import MAX_TOKENIZER_BYTES, load_encoder
    from gpt2core.eval.encoder import load_encode
    from gpt2core.export.hf import eod_id_from_tokenizer

    big = tmp_path / "tokenizer.json"
    with open(big, "wb") as fh:
        fh.truncate(MAX_TOKENIZER_BYTES + 1)  # sparse: no disk used
    for load in (load_encoder, load_encode, eod_id_from_tokenizer):
        with pytest.raises(WikiGPTError, match=rf"{big}: larger than {MAX_TOKENIZER_BYTES} bytes"):
            load(big)


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"]" * 100_000, b'{"added_tokens": "\xff"}'])
def test_a_hostile_tokenizer_json_is_one_line_naming_it(tmp_path: Path, content: bytes) -> None:
    from gpt2core.export.hf import eod_id_from_tokenizer

    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(content)
    with pytest.raises(WikiGPTError, match=rf"{bad}: "):
        eod_id_from_tokenizer(bad)


@pytest.mark.parametrize("which, content, expect", [
    ("encoder.json", b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
    ("encoder.json", b"[1, 2]", "not a JSON object"),
    ("vocab.bpe", b"#version: 0.2\n\xff\xfe x\n", "invalid UTF-8"),
])
def test_hostile_gpt2_tokenizer_files_are_one_line_naming_them(tmp_path: Path, which: str, content: bytes,
                                                               expect: str) -> None:
    from gpt2core.data.tokenizer import build_gpt2

    files = {"encoder.json": b'{"<|endoftext|>": 0, "a": 1}', "vocab.bpe": b"#version: 0.2\na b\n"}
    files[which] = content
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(WikiGPTError, match=rf"{tmp_path / which}: .*{expect}"):
        build_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe", tmp_path / "tokenizer.json")


@pytest.mark.parametrize("bad, expect", [
    (b'{"text": "a\\ud800b"}\n', "lone surrogate"),
    (b'{"text": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
])
def test_a_jsonl_source_python_cannot_hold_is_one_line_naming_file_and_line(tmp_path: Path, bad: bytes,
                                                                             expect: str) -> None:
    from gpt2core.data.sources import extract_part

    src = tmp_path / "corpus.jsonl"
    src.write_bytes(b'{"text": "fine \\ud83d\\ude00 emoji pair"}\n' + bad)
    with pytest.raises(WikiGPTError, match=rf"{src}:2: .*{expect}"):
        extract_part("jsonl", src, tmp_path / "out", "corpus.jsonl")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_a_jsonl_line_past_the_limit_is_refused_without_reading_it_whole(tmp_path: Path, compress: str) -> None:
    import gzip

    from gpt2core.data.sources.common import json_lines

    data = b'{"text": "fine"}\n' + b'{"text": "' + b"y" * 50_000 + b'"}\n'
    src = tmp_path / "corpus.jsonl"
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    src.write_bytes(data)
    with pytest.raises(WikiGPTError, match=rf"{src}:2: a line longer than 10000 bytes"):
        list(json_lines(src, max_line_bytes=10_000))
    assert [n for n, _ in json_lines(src)] == [1, 2]  # the default limit takes it


def test_tokenizer_training_takes_long_texts_in_pieces_and_learns_the_same(tmp_path: Path) -> None:
    """training_pieces cuts only where the byte-level pre-tokenizer sees the same words: the tokenizer
    trained on 300-character pieces is byte-identical to the one trained on whole texts."""
    import random

    from gpt2core.data.tokenizer import train_bpe, training_pieces

    rng = random.Random(3)
    words = ["mill", "river", "3.5", "don't", "—", "Zürich", "河边", "(1998)", "e.g.", "naïve", "\t", "  "]
    docs = ["".join(rng.choice(words) + rng.choice([" ", " ", " ", "\n", ".\n", ", ", "  ", "\n\n", " \n"])
                    for _ in range(3000)) for _ in range(3)]
    folder = _extract(tmp_path, [_article(i, d) for i, d in enumerate(docs)])
    shard = tmp_path / "s.parquet"
    presplit_shard([("p", folder)], shard, 0, 1, split=False)
    out = {}
    for size in (300, 10 ** 9):
        out[size] = tmp_path / f"tok{size}.json"
        train_bpe([[str(shard)]], out[size], vocab_size=400, min_frequency=2, sample_bytes=10 ** 8,
                  piece_chars=size)
    assert out[300].read_bytes() == out[10 ** 9].read_bytes()
    pieces = list(training_pieces(docs[0], 300))
    assert len(pieces) > 10 and "".join(pieces) == docs[0]


def test_training_pieces_give_the_pre_tokenizer_the_same_words() -> None:
    import random

    from tokenizers import pre_tokenizers

    from gpt2core.data.tokenizer import training_pieces

    words = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str
    rng = random.Random(7)
    alphabet = ["a", "Z", "é", "河", "7", ".", "'s", "—", " ", " ", "  ", "\n", " \n", "\t", "\u3000", "\r\n"]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
        pieces = list(training_pieces(text, rng.randint(1, 50)))
        assert "".join(pieces) == text
        assert [w for piece in pieces for w, _ in words(piece)] == [w for w, _ in words(text)], repr(text)


def test_the_long_paragraph_benchmark_runs_and_prints_its_anchors(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(repo / "benchmarks/bench_long_paragraph.py"), "--mb", "2",
                           "--old-mb", "1", "--tokenizer", "--workdir", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("peak / 1 GiB = ") == 2 and "old behaviour (presplit, no cut)" in proc.stdout
    assert "old behaviour (tokenizer training, whole texts)" in proc.stdout
