"""WikiText-103 perplexity end to end on an exported model: outputs, the transformers cross-check, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, shared_file
from test_eval_support import export_tiny, gpt2_tokenizer_json, small_bpe_json, tiny_gpt

from gpt2core.errors import WikiGPTError
from gpt2core.eval.runtime import read_text
from gpt2core.eval.scoring import forward_logits_at
from gpt2core.eval.wikitext import evaluate_wiki103, prepare_tokens, score_tokens

transformers = pytest.importorskip("transformers")
SAMPLE_WIKI = SAMPLE / "wiki.test.tokens"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("small")
    tok = small_bpe_json(read_text(SAMPLE_WIKI), tmp / "tokenizer.json")
    vocab = json.loads(tok.read_text())["model"]["vocab"]
    return export_tiny(tiny_gpt(len(vocab), n_positions=64), tmp / "model", tok)


def test_outputs_and_fields(small_model: Path, tmp_path: Path) -> None:
    result = evaluate_wiki103(small_model, SAMPLE_WIKI, tmp_path / "ppl.txt", tmp_path / "ppl.json",
                              overlap=16, seq_len=0, batch_size=4, device="cpu", log_path=tmp_path / "log")
    first = (tmp_path / "ppl.txt").read_text().splitlines()[0]
    assert float(first) == pytest.approx(result["word_ppl"], rel=1e-6)
    saved = json.loads((tmp_path / "ppl.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("word_ppl", "token_ppl", "loss_sum", "n_orig", "n_bpe", "windows", "overlap", "seq_len",
                "eval_file", "eval_sha256", "model_sha256", "tokenizer_sha256"):
        assert key in saved, key
    assert saved["seq_len"] == 64  # 0 means the model's n_positions
    assert saved["scored_targets"] == saved["n_bpe"] - 1
    assert saved["windows"] == 1 + math.ceil((saved["n_bpe"] - 1 - 64) / 16)
    assert saved["token_ppl"] == pytest.approx(math.exp(saved["loss_sum"] / (saved["n_bpe"] - 1)))
    assert saved["word_ppl"] == pytest.approx(math.exp(saved["loss_sum"] / (saved["n_orig"] - 1)))
    assert saved["eval_file"] == str(SAMPLE_WIKI)
    # a random model is near-uniform over the vocabulary
    assert 0.5 * 400 < saved["token_ppl"] < 2 * 400
    assert "word-level ppl" in (tmp_path / "log").read_text()
    # same inputs, same bytes
    evaluate_wiki103(small_model, SAMPLE_WIKI, tmp_path / "b.txt", tmp_path / "b.json", overlap=16,
                     batch_size=2, device="cpu")
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["loss_sum"] == pytest.approx(saved["loss_sum"], rel=1e-9)


def test_transformers_gives_the_same_perplexity(tmp_path: Path) -> None:
    """GPT-2 BPE, our export loaded by GPT2LMHeadModel and its tokenizer by PreTrainedTokenizerFast."""
    tok = gpt2_tokenizer_json(shared_file("gpt2_bpe/encoder.json"), shared_file("gpt2_bpe/vocab.bpe"),
                              tmp_path / "tokenizer.json")
    model_dir = export_tiny(tiny_gpt(50257, seed=5, n_positions=128, n_embd=48), tmp_path / "model", tok)
    ours = evaluate_wiki103(model_dir, SAMPLE_WIKI, tmp_path / "p.txt", tmp_path / "p.json", overlap=32,
                            seq_len=128, batch_size=8, device="cpu")

    hf = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    n_orig, ids = prepare_tokens(read_text(SAMPLE_WIKI), model_dir / "tokenizer.json")
    from gpt2core.eval.detok import wikitext_detokenize

    hf_ids = hf_tok(wikitext_detokenize(read_text(SAMPLE_WIKI)), add_special_tokens=False)["input_ids"]
    assert hf_ids == ids.tolist()
    score = score_tokens(forward_logits_at(lambda idx: hf(idx).logits), torch.tensor(hf_ids), seq_len=128,
                         overlap=32, batch_size=8, vocab_size=hf.config.vocab_size)
    theirs = math.exp(score.loss_sum / (n_orig - 1))
    assert n_orig == ours["n_orig"] and score.windows == ours["windows"]
    assert abs(theirs - ours["word_ppl"]) / ours["word_ppl"] < 1e-4


def test_errors_name_the_file_and_leave_nothing(small_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tokens"
    bad.write_bytes(b" = T = \n \n caf\xe9 \n")
    with pytest.raises(WikiGPTError, match="bad.tokens: not valid UTF-8"):
        evaluate_wiki103(small_model, bad, tmp_path / "o.txt", tmp_path / "o.json", device="cpu")
    with pytest.raises(WikiGPTError, match="seq_len 65 exceeds the model's n_positions 64"):
        evaluate_wiki103(small_model, SAMPLE_WIKI, tmp_path / "o.txt", tmp_path / "o.json", seq_len=65,
                         device="cpu")
    with pytest.raises(WikiGPTError, match="overlap 40 exceeds seq_len 32"):
        evaluate_wiki103(small_model, SAMPLE_WIKI, tmp_path / "o.txt", tmp_path / "o.json", seq_len=32,
                         overlap=40, device="cpu")
    with pytest.raises(WikiGPTError, match="missing"):
        evaluate_wiki103(tmp_path, SAMPLE_WIKI, tmp_path / "o.txt", tmp_path / "o.json", device="cpu")
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o.*"))
