"""The trainer on a blend of corpora: per-corpus valid loss in the metrics and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_corpora_blend import write_blend_manifest
from test_train_helpers import tiny_sections, typed

from gpt2core.training.metrics import read_metrics
from gpt2core.training.trainer import RunPaths, Trainer

TIMING = {"tokens_per_s", "mfu", "mem_mb", "step_time_s"}
WEIGHTS = {"en": 3.0, "zh": 1.0}


def make_trainer(tmp_path: Path, run: str) -> Trainer:
    manifest = tmp_path / "manifest.json"
    if not manifest.exists():
        write_blend_manifest(tmp_path, WEIGHTS, tokens=6000, valid=600)
    mc, tc = tiny_sections(eval_interval=5)
    paths = RunPaths(manifest, tmp_path / "checkpoints" / run, tmp_path / run / "done.json",
                     tmp_path / run / "metrics.jsonl")
    return Trainer(*typed(mc, tc), 1234, paths)


def test_valid_loss_per_corpus_and_weighted_overall(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "a")
    trainer.run()
    evals = [m for m in read_metrics(trainer.paths.metrics) if "valid_loss" in m]
    assert [m["step"] for m in evals] == [5, 10, 15, 20]
    for m in evals:
        by = m["valid_loss_by_corpus"]
        assert set(by) == set(WEIGHTS)
        assert m["valid_loss"] == pytest.approx((3 * by["en"] + by["zh"]) / 4)
    assert evals[-1]["valid_loss_by_corpus"]["en"] < evals[0]["valid_loss_by_corpus"]["en"]


def test_resume_with_a_blend_is_exact(tmp_path: Path) -> None:
    straight = make_trainer(tmp_path, "a")
    straight.run()
    killed = make_trainer(tmp_path, "b")
    killed.start()
    for _ in range(13):  # checkpoint at 10, three more steps, then "killed"
        killed.iteration()
    killed.metrics.close()
    resumed = make_trainer(tmp_path, "b")
    resumed.run()
    a = [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(straight.paths.metrics)]
    b = [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(resumed.paths.metrics)]
    assert a == b and len(a) == 20
    for key, value in straight.raw_model.state_dict().items():
        assert torch.equal(resumed.raw_model.state_dict()[key], value), key
