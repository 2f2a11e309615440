"""Exact resume through the real launcher: 2N iterations straight vs N, kill -9 (of torchrun and its
worker), rerun to 2N: bitwise-equal final weights and equal metrics lines (CPU, fp32)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_helpers import tiny_sections, write_manifest

from gpt2core.training.metrics import read_metrics

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
TIMING = {"tokens_per_s", "mfu", "mem_mb", "step_time_s"}
N = 10


def command(workdir: Path, run: str) -> list[str]:
    model, train = tiny_sections(iters=2 * N, save_interval=N, eval_interval=5, micro_batch=8)
    model.update(n_layer=4, n_head=4, n_embd=128, seq_len=128, n_positions=128)
    return [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "1", "-m", "gpt2core.train",
            "--manifest", str(workdir / "manifest.json"), "--model", json.dumps(model),
            "--train", json.dumps(train), "--data-seed", "1234", "--checkpoints", f"checkpoints/{run}",
            "--done", f"{run}/done.json", "--metrics", f"{run}/metrics.jsonl"]


def launch(workdir: Path, run: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.Popen(command(workdir, run), cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]


def lines(path: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(path)]


def test_kill_9_and_resume_is_bitwise_exact(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    finish(launch(tmp_path, "straight"))

    proc = launch(tmp_path, "killed")
    history = tmp_path / "checkpoints" / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done_steps = [m["step"] for m in read_metrics(history)]
        if done_steps and done_steps[-1] >= N + 2:  # past the checkpoint at N: those lines must be replaced
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    run_dir = tmp_path / "checkpoints" / "killed"
    assert not (run_dir / "finished.json").exists(), "the run finished before it could be killed"
    assert [p.name for p in run_dir.glob("step_*")] == [f"step_{N:07d}"]
    assert max(m["step"] for m in read_metrics(history)) > N
    assert not (tmp_path / "killed" / "done.json").exists()

    finish(launch(tmp_path, "killed"))
    straight = (tmp_path / "checkpoints" / "straight" / f"step_{2 * N:07d}" / "model.safetensors").read_bytes()
    resumed = (run_dir / f"step_{2 * N:07d}" / "model.safetensors").read_bytes()
    assert straight == resumed
    a, b = lines(tmp_path / "straight" / "metrics.jsonl"), lines(tmp_path / "killed" / "metrics.jsonl")
    assert [m["step"] for m in b] == list(range(1, 2 * N + 1))
    assert a == b
    done_a = json.loads((tmp_path / "straight" / "done.json").read_text())
    done_b = json.loads((tmp_path / "killed" / "done.json").read_text())
    assert done_a["final_train_loss"] == done_b["final_train_loss"]
    assert done_a["final_valid_loss"] == done_b["final_valid_loss"]
