"""Training on a blend of corpora (gpt2core.data.blend): proportions by weight, exact resume, a valid loss per
corpus. Each corpus's tokens lie in its own id range, so a window tells which corpus it came from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2core.data.blend import (
    blend_data,
    corpora,
    model_valid_loss,
    per_corpus_loss,
    train_blend,
    valid_sources,
)
from gpt2core.data.loader import BatchSource, Blend, WindowDataset, load_manifest, split_stream
from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig

EOD = 999
SEQ = 16


def _write_split(folder: Path, split: str, tokens: np.ndarray) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    bin_path = folder / f"{split}.bin"
    tokens.astype("<u2").tofile(bin_path)
    return {"bin": str(bin_path), "idx": str(folder / f"{split}.idx.npy"), "tokens": len(tokens),
            "documents": 1, "sha256": hashlib.sha256(bin_path.read_bytes()).hexdigest()}


def write_blend_manifest(tmp_path: Path, weights: dict[str, float], tokens: int = 4000,
                         valid: int = 400) -> Path:
    """A manifest with one corpus per weight; corpus k's tokens are 100k..100k+99 (and EOD)."""
    rng = np.random.default_rng(0)
    sections, overall = [], {s: {"tokens": 0, "documents": 0, "shards": []} for s in ("train", "valid", "test")}
    for k, (name, weight) in enumerate(weights.items()):
        splits = {}
        for split, n in (("train", tokens), ("valid", valid), ("test", 0)):
            shards = []
            if n:
                toks = rng.integers(100 * k, 100 * k + 100, n)
                toks[rng.random(n) < 0.02] = EOD
                shards.append(_write_split(tmp_path / "tokens" / name / "00000", split, toks))
            splits[split] = {"tokens": n, "documents": len(shards), "shards": shards}
            overall[split]["shards"] += shards
            overall[split]["tokens"] += n
        sections.append({"name": name, "kind": "jsonl", "lang": "zh" if k % 2 else "en", "weight": weight,
                         "splits": splits, "dropped": {}})
    manifest = {"dtype": "uint16", "tokenizer": {"path": "t.json", "sha256": "0" * 64, "vocab_size": 1000,
                                                 "eod_id": EOD},
                "splits": overall, "dropped": {}, "corpora": sections}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def corpus_of(window: np.ndarray) -> int:
    ids = window[window != EOD]
    assert len(set((ids // 100).tolist())) == 1  # a window never mixes corpora
    return int(ids[0] // 100)


@pytest.mark.parametrize("weights", [{"en": 0.5, "zh": 0.3, "mnbvc": 0.2}, {"a": 7.0, "b": 1.0},
                                     {"a": 1.0, "b": 1.0, "c": 1.0, "d": 3.0}])
def test_blend_proportions_follow_weights_within_2_percent(tmp_path, weights):
    manifest = load_manifest(write_blend_manifest(tmp_path, weights))
    blend, used = train_blend(manifest, SEQ, seed=1234)
    assert [c.name for c in used] == list(weights)
    counts = np.bincount([corpus_of(blend.sample(g)) for g in range(10_000)], minlength=len(weights))
    share = counts / counts.sum()
    want = np.array(list(weights.values())) / sum(weights.values())
    assert np.all(np.abs(share - want) <= 0.02), (share, want)
    # and every prefix of the schedule is already close (the interleaving is smooth, not in runs)
    head = np.bincount([corpus_of(blend.sample(g)) for g in range(200)], minlength=len(weights)) / 200
    assert np.all(np.abs(head - want) <= 0.02)


def test_same_seed_step_rank_give_the_same_windows_in_any_order(tmp_path):
    manifest = load_manifest(write_blend_manifest(tmp_path, {"en": 2.0, "zh": 1.0}, tokens=3000))

    def source():
        return BatchSource(train_blend(manifest, SEQ, 7)[0], micro_batch=4, grad_accum=2, world=2, eod_id=EOD)

    straight = source()
    run = {(s, m, r): straight.get(s, m, r).x for s in range(60) for m in range(2) for r in range(2)}
    resumed = source()  # a fresh process resuming at step 41: no loader state, only the step number
    for s in range(41, 60):
        for m in range(2):
            for r in range(2):
                assert torch.equal(resumed.get(s, m, r).x, run[(s, m, r)])
    assert not torch.equal(run[(5, 0, 0)], run[(5, 0, 1)])  # ranks read different windows
    other = BatchSource(train_blend(manifest, SEQ, 8)[0], 4, 2, 2, EOD)
    assert not torch.equal(other.get(3).x, run[(3, 0, 0)])  # the seed matters


def test_epochs_wrap_and_adding_a_corpus_keeps_each_corpus_order(tmp_path):
    two = load_manifest(write_blend_manifest(tmp_path / "a", {"en": 1.0, "zh": 1.0}, tokens=300))
    blend, _ = train_blend(two, SEQ, 3)
    windows = [blend.sample(g) for g in range(200)]  # far past one epoch (18 windows) of either corpus
    assert [corpus_of(w) for w in windows].count(0) == 100
    three = load_manifest(write_blend_manifest(tmp_path / "b", {"en": 1.0, "zh": 1.0, "new": 2.0}, tokens=300))
    bigger, _ = train_blend(three, SEQ, 3)
    en_two = [w for w in windows if corpus_of(w) == 0][:40]
    en_three = [w for w in (bigger.sample(g) for g in range(400)) if corpus_of(w) == 0][:40]
    assert all(np.array_equal(a, b) for a, b in zip(en_two, en_three, strict=True))


def test_one_corpus_reads_what_the_single_stream_loader_reads(tmp_path):
    manifest = load_manifest(write_blend_manifest(tmp_path, {"only": 1.0}))
    old = BatchSource(Blend([WindowDataset(split_stream(manifest, "train"), SEQ, 5)], [1.0]), 4, 2, 2, EOD)
    data = blend_data(manifest, "m.json", SEQ, 5, micro_batch=4, grad_accum=2, world=2)
    old_valid = BatchSource(Blend([WindowDataset(split_stream(manifest, "valid"), SEQ, 6)], [1.0]), 4, 1, 1, EOD)
    for step in (0, 3, 17):
        assert torch.equal(data.train.get(step, 1, 1).x, old.get(step, 1, 1).x)
        assert torch.equal(data.valid["only"].get(step).x, old_valid.get(step).x)
    assert data.weights == {"only": 1.0}
    del manifest["corpora"]  # a manifest written before per-corpus sections: one corpus named "all"
    (c,) = corpora(manifest)
    assert c.name == "all" and c.weight == 1.0
    assert torch.equal(blend_data(manifest, "m.json", SEQ, 5, 4, 2, 2).train.get(3).x, old.get(3).x)


def test_bad_corpora_section_is_a_one_line_error(tmp_path):
    manifest = load_manifest(write_blend_manifest(tmp_path, {"en": 1.0}))
    manifest["corpora"][0]["weight"] = 0
    with pytest.raises(WikiGPTError, match="corpus 'en' has weight 0"):
        corpora(manifest, "m.json")
    manifest["corpora"][0]["weight"] = 1.0
    del manifest["corpora"][0]["splits"]
    with pytest.raises(WikiGPTError, match="m.json: malformed corpora section"):
        corpora(manifest, "m.json")


def test_valid_loss_per_corpus_and_overall(tmp_path, capsys):
    weights = {"en": 3.0, "zh": 1.0, "tiny": 1.0}
    path = write_blend_manifest(tmp_path, weights, valid=400)
    manifest = load_manifest(path)
    manifest["corpora"][2]["splits"]["valid"] = {"tokens": 0, "documents": 0, "shards": []}
    sources = valid_sources(manifest, SEQ, 99, micro_batch=4, eod_id=EOD)
    assert list(sources) == ["en", "zh"]  # a corpus without valid tokens is skipped, not an error, but named
    assert "warning: corpus tiny: 0 valid tokens, fewer than one window of 17; it has no valid loss" in (
        capsys.readouterr().err)
    for name, k in (("en", 0), ("zh", 1)):
        assert {corpus_of(w) for w in sources[name].get(0).x.numpy()} == {k}
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1000, padded_vocab_size=1024, n_positions=SEQ, n_layer=1, n_head=2,
                          n_embd=16))
    model.train()
    losses = model_valid_loss(model, sources, iters=2, weights={"en": 3.0, "zh": 1.0})
    assert model.training  # mode restored
    assert set(losses) == {"en", "zh", "overall"}
    assert losses["overall"] == pytest.approx((3 * losses["en"] + losses["zh"]) / 4)
    again = model_valid_loss(model, sources, iters=2, weights={"en": 3.0, "zh": 1.0})
    assert again == losses  # fixed valid batches: the same model gives the same numbers
    # scoring the "en" corpus alone gives the same per-corpus number
    alone = per_corpus_loss(lambda b: _loss(model, b), {"en": sources["en"]}, iters=2)
    assert alone["en"] == pytest.approx(losses["en"], rel=1e-6)


def _loss(model, batch) -> float:
    from gpt2core.model import lm_loss

    model.eval()
    with torch.no_grad():
        return lm_loss(model(batch.x), batch.y, batch.mask).item()
