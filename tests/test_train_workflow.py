"""The train, loss_curve, merge and generate rules through the real Snakemake workflow: a full run, a
nothing-to-do rerun, a changed train param reruns train onward only, --forcerun train starts from step 0,
and a `kill -9` of Snakemake mid-training resumes from the last checkpoint on the plain rerun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, REPO, SAMPLE, run_snakemake, shared_file, tiny_config, write_config

from gpt2core.export.hf import load_hf
from gpt2core.training.metrics import read_metrics

pytestmark = pytest.mark.e2e
TARGETS = ("results/samples.jsonl", "results/loss_curve.png")
MY_RULES = {"train", "loss_curve", "merge", "generate"}


def workflow_config(tmp_path: Path, **train: object) -> dict:
    """The embedded default with a small model; the shared enwiki excerpt if the sample wiki is absent."""
    over = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 64, "n_positions": 64, "dropout": 0.0},
            "train": {"iters": 40, "save_interval": 20, "eval_interval": 20, "micro_batch": 8, "lr": 2e-3,
                      **train},
            "generate": {"prompts": ["The history of", "In mathematics,"], "max_new_tokens": 12}}
    if not (SAMPLE / "samplewiki-pages-articles.xml.bz2").exists():
        dump = shared_file("enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
        over["corpora"] = [{"name": "enwiki", "sources": [{"url": str(dump)}]}]
    config = tiny_config(**over)
    write_config(tmp_path, config)
    return config


def planned_rules(workdir: Path, *args: str) -> set[str]:
    """Rules a dry run would execute (from Snakemake's job-stats table)."""
    out = run_snakemake(workdir, "-n", *args).stdout
    table = out.split("Job stats:")[1] if "Job stats:" in out else ""
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"total", "job"}


def test_pipeline_rerun_rules_and_forcerun(tmp_path: Path) -> None:
    workflow_config(tmp_path)
    run_snakemake(tmp_path, *TARGETS)
    done = json.loads((tmp_path / "results/train/done.json").read_text())
    assert done["iterations"] == 40 and done["checkpoint"] == "checkpoints/default/step_0000040"
    metrics = read_metrics(tmp_path / "results/train/metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 41))
    first, last = (sum(m["loss"] for m in part) / 5 for part in (metrics[:5], metrics[-5:]))
    assert last < first - 0.8  # the loss falls visibly on the shipped sample, even in 40 steps
    assert (tmp_path / "results/loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = [json.loads(x) for x in (tmp_path / "results/samples.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == ["The history of", "In mathematics,"]

    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "results/model").eval()
    ours = load_hf(tmp_path / "results/model")
    idx = torch.randint(0, ours.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[..., : ours.config.vocab_size], atol=1e-5, rtol=0)

    assert planned_rules(tmp_path, *TARGETS) == set()
    config = workflow_config(tmp_path, lr=1e-3)
    assert config["train"]["lr"] == 1e-3
    assert planned_rules(tmp_path, *TARGETS) == MY_RULES  # not the data stages

    workflow_config(tmp_path)
    run_snakemake(tmp_path, "--forcerun", "train", *TARGETS)
    log = (tmp_path / "logs/train/train.log").read_text()
    assert "training again from step 0" in log and "resuming" not in log
    assert [m["step"] for m in read_metrics(tmp_path / "results/train/metrics.jsonl")] == list(range(1, 41))

    # a train key that cannot change the weights: train reruns (its params changed), keeps the finished
    # run without a step, and what follows runs on the same weights
    weights = (tmp_path / "results/model/model.safetensors").read_bytes()
    workflow_config(tmp_path, log_interval=7, keep_last=1)
    run_snakemake(tmp_path, *TARGETS)
    log = (tmp_path / "logs/train/train.log").read_text()
    assert "only keep_last, log_interval changed, which cannot change its weights: keeping it" in log, log
    assert "training again" not in log
    assert (tmp_path / "results/model/model.safetensors").read_bytes() == weights
    assert [p.name for p in (tmp_path / "checkpoints/default").glob("step_*")] == ["step_0000040"]


def test_killed_snakemake_resumes_on_plain_rerun(tmp_path: Path) -> None:
    workflow_config(tmp_path, iters=120)
    run_snakemake(tmp_path, "results/data/manifest.json")
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "results/train/done.json"]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    history = tmp_path / "checkpoints/default/metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        lines = read_metrics(history)
        if lines and lines[-1]["step"] >= 23:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(1.0)  # the worker dies with its torchrun (PR_SET_PDEATHSIG)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints/default").glob("step_*"))
    assert ckpts and ckpts[-1] < "step_0000120" and not (tmp_path / "results/train/done.json").exists()
    killed_at = max(m["step"] for m in read_metrics(history))

    rerun = run_snakemake(tmp_path, "results/train/done.json")  # plain: no --unlock
    assert "removed a stale Snakemake lock" in rerun.stdout + rerun.stderr
    log = (tmp_path / "logs/train/train.log").read_text()
    assert f"resuming from checkpoints/default/{ckpts[-1]}" in log
    resumed_from = int(ckpts[-1][5:])
    assert resumed_from < killed_at  # lines past the checkpoint existed and were replaced
    steps = [m["step"] for m in read_metrics(tmp_path / "results/train/metrics.jsonl")]
    assert steps == list(range(1, 121))
    assert json.loads((tmp_path / "results/train/done.json").read_text())["iterations"] == 120


def test_train_runs_without_torchrun_on_path(tmp_path: Path) -> None:
    """`.venv/bin/snakemake` from a shell that never activated the venv: torchrun is not on PATH, and the
    train rule falls back to this Python's `-m torch.distributed.run`."""
    workflow_config(tmp_path, iters=4, save_interval=4, eval_interval=4)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "results/train/done.json"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((tmp_path / "results/train/done.json").read_text())["iterations"] == 4
