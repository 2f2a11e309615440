"""A run finished by a trainer whose Snakemake was killed is kept, not trained again (issue 19, item 3).

`kill -9` of Snakemake alone leaves its train job running; the warning then says to wait for it to end and
rerun. The rerun must keep the finished run (outputs rewritten, no step, checkpoints untouched), while
`--forcerun train` still trains again from step 0, as the README promises."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import snakemake_force
from conftest import BIN, REPO, run_snakemake
from test_train_workflow import workflow_config

from gpt2core.training import retrain
from gpt2core.training.metrics import read_metrics
from gpt2core.training.run_lock import lock_holder

pytestmark = pytest.mark.e2e
ITERS = 60


def start_train(workdir: Path) -> subprocess.Popen:
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "results/train/done.json"]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.mark.faults
def test_a_run_finished_by_an_orphaned_trainer_is_kept_on_the_plain_rerun(tmp_path: Path) -> None:
    workflow_config(tmp_path, iters=ITERS, save_interval=20)
    run_snakemake(tmp_path, "results/data/manifest.json")
    run = tmp_path / "checkpoints" / "default"
    proc = start_train(tmp_path)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        lines = read_metrics(run / "metrics.jsonl")
        if lines and lines[-1]["step"] >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # Snakemake alone: its train job runs on
    proc.wait(timeout=60)
    time.sleep(1.0)
    assert lock_holder(run) is not None, "the trainer died with its Snakemake: nothing to check"
    deadline = time.time() + 600
    while time.time() < deadline and lock_holder(run) is not None:
        time.sleep(0.2)
    assert (run / "finished.json").is_file(), "the orphaned trainer did not finish"
    final = run / f"step_{ITERS:07d}"
    weights, stamp = (final / "model.safetensors").read_bytes(), final.stat().st_mtime_ns
    history = (run / "metrics.jsonl").read_text()

    rerun = run_snakemake(tmp_path, "results/train/done.json")  # what the warning says: wait, then rerun
    assert "removed a stale Snakemake lock" in rerun.stdout + rerun.stderr
    log = (tmp_path / "logs/train/train.log").read_text()
    assert "nothing changed" in log and "keeping it" in log and "training again" not in log, log[-3000:]
    assert (final / "model.safetensors").read_bytes() == weights and final.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "results/train/done.json").read_text())["iterations"] == ITERS
    assert (tmp_path / "results/train/metrics.jsonl").read_text() == history

    run_snakemake(tmp_path, "--forcerun", "train", "results/train/done.json")
    log = (tmp_path / "logs/train/train.log").read_text()
    assert "training again from step 0 (--forcerun train)" in log, log[-3000:]
    assert [m["step"] for m in read_metrics(tmp_path / "results/train/metrics.jsonl")] == list(range(1, ITERS + 1))
    assert not (run / retrain.REQUEST).exists()


def test_a_dry_run_leaves_no_retrain_note(tmp_path: Path) -> None:
    workflow_config(tmp_path)
    run_snakemake(tmp_path, "-n", "--forcerun", "train", "results/train/done.json")
    assert not (tmp_path / "checkpoints" / "default" / retrain.REQUEST).exists()


@pytest.mark.parametrize(("kw", "forced"), [
    ({}, False),
    ({"forcerun": ["train"]}, True),
    ({"forcerun": ["./results/train/done.json"]}, True),
    ({"forcerun": ["gather"]}, False),  # upstream: the same data keeps the run, other data retrains anyway
    ({"forceall": True}, True),
    ({"forcetargets": True, "targets": ["results/train/metrics.jsonl"]}, True),
    ({"forcetargets": True, "targets": ["results/model/config.json"]}, False),
    ({"targets": ["train"]}, False),
])
def test_train_forced_by_name_output_or_everything(kw: dict, forced: bool) -> None:
    args = {"forceall": False, "forcerun": [], "forcetargets": False, "targets": [], **kw}
    assert snakemake_force.train_forced("train", ["results/train/done.json", "results/train/metrics.jsonl"],
                                **args) is forced
