"""LAMBADA: strict vs last-token accuracy on a model with known answers; the rule's function end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE
from test_eval_support import export_tiny, small_bpe_json, tiny_gpt
from torch import nn

from gpt2core.errors import WikiGPTError
from gpt2core.eval.encoder import load_encode
from gpt2core.eval.lambada import (
    count_correct,
    evaluate_lambada,
    last_token_examples,
    read_lambada,
    strict_examples,
)
from gpt2core.eval.scoring import logits_at_for


class NextCharTable(nn.Module):
    """A model whose answer is known: the logits for the next token depend only on the current token,
    through a fixed table `next_of[token] = predicted token`."""

    def __init__(self, vocab_size: int, next_of: dict[int, int]) -> None:
        super().__init__()
        table = torch.zeros(vocab_size, vocab_size)
        for cur, nxt in next_of.items():
            table[cur, nxt] = 1.0
        self.table = table

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte-level with no merges: every character is one token, so " cot" is 4 target tokens."""
    return small_bpe_json("abc", tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=257)


def test_strict_and_last_token_on_known_answers(char_tokenizer: Path) -> None:
    encode = load_encode(char_tokenizer)
    tid = {ch: encode([ch])[0][0] for ch in ("a", "b", "c", "o", "t", " ")}
    # predicts: after "b" a space, after a space "c", after "c" "a", after "a" "t", after "o" "t"
    model = NextCharTable(257, {tid["b"]: tid[" "], tid[" "]: tid["c"], tid["c"]: tid["a"],
                                tid["a"]: tid["t"], tid["o"]: tid["t"]})
    texts = ["a b cat",  # every target token right: strict and last-token correct
             "a b cot",  # "o" missed (the table says "a"), the final "t" right: last-token only
             "a b cab"]  # the final "b" missed: neither
    strict = strict_examples(texts, encode)
    assert [len(ex.target) for ex in strict] == [4, 4, 4]  # " " + 3 letters
    assert strict[0].context == encode(["a b"])[0]
    last = last_token_examples(texts, encode)
    assert [ex.target for ex in last] == [[tid["t"]], [tid["t"]], [tid["b"]]]
    logits_at = logits_at_for(model)
    for batch_size in (1, 2, 3):
        assert count_correct(logits_at, strict, 64, 257, batch_size) == (1, 0)
        assert count_correct(logits_at, last, 64, 257, batch_size) == (2, 0)
    # per line, to be sure which ones count
    assert [count_correct(logits_at, [ex], 64, 257, 1)[0] for ex in strict] == [1, 0, 0]
    assert [count_correct(logits_at, [ex], 64, 257, 1)[0] for ex in last] == [1, 1, 0]


def test_long_contexts_are_truncated_from_the_left(char_tokenizer: Path) -> None:
    encode = load_encode(char_tokenizer)
    tid = {ch: encode([ch])[0][0] for ch in ("a", "b", "c", "t", " ")}
    model = NextCharTable(257, {tid["b"]: tid[" "], tid[" "]: tid["c"], tid["c"]: tid["a"], tid["a"]: tid["t"]})
    ex = strict_examples(["a " * 40 + "b cat"], encode)
    assert count_correct(logits_at_for(model), ex, 16, 257, 4) == (1, 1)


def test_strict_context_follows_the_reference() -> None:
    def encode(texts: list[str]) -> list[list[int]]:
        return [[ord(c) for c in t] for t in texts]

    (ex,) = strict_examples(["He said  hello.\n  Bye  world "], encode)
    assert ex.context == encode(["He said  hello.\n  Bye"])[0]  # text before the last word, stripped
    assert ex.target == encode([" world"])[0]


def test_evaluate_lambada_on_an_exported_model(tmp_path: Path) -> None:
    sample = SAMPLE / "lambada_sample.jsonl"
    tok = small_bpe_json(sample.read_text(encoding="utf-8"), tmp_path / "tokenizer.json", vocab_size=400)
    vocab = len(json.loads(tok.read_text())["model"]["vocab"])
    model_dir = export_tiny(tiny_gpt(vocab, n_positions=32), tmp_path / "model", tok)
    result = evaluate_lambada(model_dir, sample, tmp_path / "lambada.json", batch_size=7, device="cpu",
                              log_path=tmp_path / "log")
    saved = json.loads((tmp_path / "lambada.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["lines"] == len(read_lambada(sample)) >= 100
    assert saved["strict_accuracy"] == saved["strict_correct"] / saved["lines"]
    assert 0 <= saved["strict_correct"] <= saved["lines"] and 0 <= saved["last_token_correct"] <= saved["lines"]
    assert saved["truncated_contexts"] > 0  # the passages are longer than 32 tokens
    assert "strict accuracy" in (tmp_path / "log").read_text()


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "l.jsonl"
    bad.write_text('{"text": "one two"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(WikiGPTError, match=r"l.jsonl:2: not valid JSON"):
        read_lambada(bad)
    bad.write_text('{"text": "one two"}\n{"txt": "one two"}\n', encoding="utf-8")
    with pytest.raises(WikiGPTError, match=r"l.jsonl:2: needs a \"text\""):
        read_lambada(bad)


def test_evaluate_lambada_reports_each_accuracy_by_its_own_definition(char_tokenizer: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole evaluation on the known-answer model: "a b cot" is right under last-token only, so the
    saved strict and last-token figures (1 and 2 of 3) cannot be swapped or computed on the same examples."""
    import shutil

    import gpt2core.eval.lambada as lambada

    encode = load_encode(char_tokenizer)
    tid = {ch: encode([ch])[0][0] for ch in ("a", "b", "c", "o", "t", " ")}
    model = NextCharTable(257, {tid["b"]: tid[" "], tid[" "]: tid["c"], tid["c"]: tid["a"],
                                tid["a"]: tid["t"], tid["o"]: tid["t"]})
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(char_tokenizer, model_dir / "tokenizer.json")
    for name in ("model.safetensors", "config.json"):  # only hashed into the result: the model is the table
        (model_dir / name).write_text("{}")
    monkeypatch.setattr(lambada, "load_model", lambda *_: (model, {"n_positions": 64, "vocab_size": 257}))
    eval_file = tmp_path / "lambada.jsonl"
    eval_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("a b cat", "a b cot", "a b cab")))
    result = evaluate_lambada(model_dir, eval_file, tmp_path / "out.json", batch_size=2, device="cpu")
    assert (result["strict_correct"], result["last_token_correct"], result["lines"]) == (1, 2, 3)
    assert result["strict_accuracy"] == 1 / 3 and result["last_token_accuracy"] == 2 / 3
