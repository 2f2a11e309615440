"""Tensor and data parallelism through the real trainer (`torchrun -m gpt2core.train`, gloo, CPU) and the
real workflow: every layout trains like the one-process run from the same init on the same global batches
(fp32: per-step losses and final weights within 1e-5), a sharded run resumes exactly after `kill -9` of one
rank, two "nodes" on one machine match one node, `rule merge` turns a tp=2 run into one HF model, and
layout errors stop the workflow before launch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_snakemake, write_config
from test_train_helpers import tiny_sections, write_manifest
from test_train_workflow import workflow_config

from gpt2core.config import ModelConfig
from gpt2core.export.merge import merged_checkpoint
from gpt2core.training.build import gpt_config
from gpt2core.training.flops import flops_per_token
from gpt2core.training.metrics import read_metrics

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
TOL = 1e-5
ITERS = 10


def command(workdir: Path, run: str, nproc: int, launch: tuple[str, ...] = ("--standalone",),
            **train: object) -> list[str]:
    model, tc = tiny_sections(**{"iters": ITERS, "save_interval": 5, "eval_interval": 5, "lr": 1.5e-4,
                                 "min_lr": 1.5e-5, "nproc_per_node": nproc, **train})  # the reference lr by default
    model.update(n_layer=2, n_head=4, n_embd=64, seq_len=32, n_positions=32, dropout=0.0)  # same masks: exact
    return [str(BIN / "torchrun"), *launch, "--nproc-per-node", str(nproc), "-m", "gpt2core.train",
            "--manifest", str(workdir / "manifest.json"), "--model", json.dumps(model), "--train", json.dumps(tc),
            "--data-seed", "1234", "--checkpoints", f"checkpoints/{run}", "--done", f"{run}/done.json",
            "--metrics", f"{run}/metrics.jsonl"]


PEAK_TFLOPS = 0.01  # a made-up per-device peak, so CPU runs report an MFU


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                WIKIGPT_PEAK_TFLOPS=str(PEAK_TFLOPS))


def train(workdir: Path, run: str, nproc: int = 1, **tc: object) -> None:
    proc = subprocess.run(command(workdir, run, nproc, **tc), cwd=workdir, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def outcome(workdir: Path, run: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    metrics = read_metrics(workdir / run / "metrics.jsonl")
    _, state = merged_checkpoint(workdir / "checkpoints" / run / f"step_{ITERS:07d}")
    return metrics, state


def assert_same(workdir: Path, ref_run: str, run: str) -> None:
    (ref_m, ref_w), (m, w) = outcome(workdir, ref_run), outcome(workdir, run)
    assert [r["step"] for r in m] == list(range(1, ITERS + 1))
    for a, b in zip(ref_m, m, strict=True):
        assert abs(a["loss"] - b["loss"]) <= TOL, (a["step"], a["loss"], b["loss"])
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * a["grad_norm"], a["step"]
        assert ("valid_loss" in a) == ("valid_loss" in b)
        if "valid_loss" in a:
            assert abs(a["valid_loss"] - b["valid_loss"]) <= TOL
        assert a["tokens"] == b["tokens"]
    for key, value in ref_w.items():
        diff = (value - w[key]).abs().max().item()
        assert diff <= TOL, f"{key}: final weights differ by {diff}"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ptrain")
    write_manifest(root)
    train(root, "tp1")
    train(root, "tp1_accum2", grad_accum=2)
    return root


def test_trainer_tp2_matches_tp1(work: Path) -> None:
    train(work, "tp2", nproc=2, tp=2)
    assert_same(work, "tp1", "tp2")
    meta = json.loads((work / "checkpoints/tp2/step_0000010/meta.json").read_text())
    assert (meta["tp"], meta["layout"], meta["padded_vocab_size"]) == (2, "dcp", 512)
    first, last = outcome(work, "tp2")[0][0]["loss"], outcome(work, "tp2")[0][-1]["loss"]
    assert last < first


def test_trainer_with_tp_alone_takes_the_layout_from_torchrun(work: Path) -> None:
    """`--train` naming only tp (no dp, no nproc_per_node), as a torchrun user writes it: dp is torchrun's world
    size over tp, and the run is the tp=2 run (was: '1 x 1 = 1 processes, but train.tp x train.dp = 2 x 1')."""
    cmd = command(work, "tp2_alone", 2, tp=2)
    at = cmd.index("--train") + 1
    tc = {k: v for k, v in json.loads(cmd[at]).items() if k not in ("dp", "nproc_per_node")}
    cmd[at] = json.dumps(tc)
    proc = subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_same(work, "tp1", "tp2_alone")
    meta = json.loads((work / "checkpoints/tp2_alone/step_0000010/meta.json").read_text())
    assert (meta["tp"], meta["dp"], meta["world_size"]) == (2, 1, 2)


def test_trainer_tp2_bf16_with_half_residual_follows_the_fp32_stream(work: Path) -> None:
    """train.half_residual under tensor parallelism: the stream's cast happens before the sharded blocks."""
    train(work, "tp2_bf16", nproc=2, tp=2, precision="bf16")
    train(work, "tp2_bf16_half", nproc=2, tp=2, precision="bf16", half_residual=True)
    plain, half = (read_metrics(work / run / "metrics.jsonl") for run in ("tp2_bf16", "tp2_bf16_half"))
    assert [m["step"] for m in half] == list(range(1, ITERS + 1))
    for a, b in zip(plain, half, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3), (a["loss"], b["loss"])
    assert [m["loss"] for m in plain] != [m["loss"] for m in half]  # the stream really was rounded to bf16


def test_trainer_sequence_parallel_matches_tp1(work: Path) -> None:
    train(work, "sp2", nproc=2, tp=2, sequence_parallel=True)
    assert_same(work, "tp1", "sp2")


def test_trainer_dp2_matches_dp1_at_the_same_global_batch(work: Path) -> None:
    train(work, "dp2", nproc=2, dp=2)  # 2 ranks x micro_batch 4 = 1 rank x micro_batch 4 x grad_accum 2
    assert_same(work, "tp1_accum2", "dp2")
    # MFU is against both devices' peak: the global batch's FLOPs ran on two of them
    model = tiny_sections()[0] | {"n_layer": 2, "n_head": 4, "n_embd": 64, "seq_len": 32, "n_positions": 32}
    cfg = gpt_config(ModelConfig.from_dict(model), 300)
    for m in read_metrics(work / "dp2" / "metrics.jsonl"):
        expected = flops_per_token(cfg, 32) * m["tokens_per_s"] / (2 * PEAK_TFLOPS * 1e12)
        assert m["mfu"] == pytest.approx(expected, abs=1e-4), m


def test_trainer_dp2_with_loss_chunk_matches_dp1(work: Path) -> None:
    """train.loss_chunk runs its loss inside the model's forward, where FSDP2 has gathered the tied
    embedding: the gradients it makes there are reduced like any other."""
    train(work, "dp2_chunk", nproc=2, dp=2, loss_chunk=24)
    assert_same(work, "tp1_accum2", "dp2_chunk")


def test_trainer_dp2_tp2_on_four_processes_matches(work: Path) -> None:
    train(work, "dp2tp2", nproc=4, dp=2, tp=2)
    assert_same(work, "tp1_accum2", "dp2tp2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_match_one_node(work: Path) -> None:
    launch = ("--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
              "--rdzv-id", "two-nodes")
    procs = [subprocess.Popen(command(work, "nodes2", 1, launch, tp=2, nnodes=2), cwd=work, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
    assert_same(work, "tp1", "nodes2")


def test_kill_9_of_one_rank_then_resume_is_exact(work: Path) -> None:
    if not (work / "tp2" / "done.json").exists():
        train(work, "tp2", nproc=2, tp=2)
    proc = subprocess.Popen(command(work, "killed", 2, tp=2), cwd=work, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    history = work / "checkpoints" / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [m["step"] for m in read_metrics(history)]
        if steps and steps[-1] >= 6:  # past the checkpoint at step 5
            break
        time.sleep(0.01)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGKILL)  # one rank dies; torchrun stops the other
    proc.wait(timeout=120)
    assert proc.returncode != 0
    run_dir = work / "checkpoints" / "killed"
    assert not (run_dir / "finished.json").exists(), "the run finished before it could be killed"
    assert sorted(p.name for p in run_dir.glob("step_*")) == ["step_0000005"]
    train(work, "killed", nproc=2, tp=2)
    a, b = outcome(work, "tp2"), outcome(work, "killed")
    timing = {"tokens_per_s", "mfu", "mem_mb", "step_time_s"}
    assert [{k: v for k, v in m.items() if k not in timing} for m in a[0]] == \
        [{k: v for k, v in m.items() if k not in timing} for m in b[0]]
    for key, value in a[1].items():
        assert torch.equal(value, b[1][key]), key


def test_resume_under_another_tp(work: Path) -> None:
    """A tp=2 run's step-5 checkpoint continued by a tp=1 run: like the tp=1 run from the start."""
    import shutil

    if not (work / "checkpoints/tp2/step_0000005").exists():
        train(work, "tp2", nproc=2, tp=2)
    (work / "checkpoints" / "reshard").mkdir(parents=True)
    shutil.copytree(work / "checkpoints/tp2/step_0000005", work / "checkpoints/reshard/step_0000005")
    shutil.copy(work / "checkpoints/tp2/metrics.jsonl", work / "checkpoints/reshard/metrics.jsonl")
    train(work, "reshard", nproc=1)
    assert_same(work, "tp1", "reshard")


def test_resume_with_more_data_parallel_ranks(work: Path) -> None:
    """A dp=2 run's step-5 checkpoint continued by dp=3 at the same tp: DCP reshards the FSDP2 shards, and
    rank 2, which the saving run did not have, takes rank 0's RNG state instead of failing on a missing file.
    At 20x the reference LR the loss has fallen by step 5, so a resume that re-initialised the weights shows."""
    import shutil

    fast = {"lr": 3e-3, "min_lr": 3e-4}
    train(work, "dp2_fast", nproc=2, dp=2, **fast)
    (work / "checkpoints" / "dp3").mkdir(parents=True)
    shutil.copytree(work / "checkpoints/dp2_fast/step_0000005", work / "checkpoints/dp3/step_0000005")
    shutil.copy(work / "checkpoints/dp2_fast/metrics.jsonl", work / "checkpoints/dp3/metrics.jsonl")
    proc = subprocess.run(command(work, "dp3", 3, dp=3, **fast), cwd=work, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming from" in proc.stderr and "train config changed since step_0000005: dp" in proc.stderr
    before, after = read_metrics(work / "dp2_fast/metrics.jsonl"), read_metrics(work / "dp3/metrics.jsonl")
    assert [m["step"] for m in after] == list(range(1, ITERS + 1))
    assert after[:5] == before[:5]
    assert all(m["tokens"] - p["tokens"] == 3 * 4 * 32 for p, m in zip(after[4:], after[5:], strict=False))
    # step 6 starts from the trained weights: near dp=2's step 6 (another batch), well below where a
    # re-initialised model would start (step 1's loss; batches differ by ~0.1 here)
    losses = (after[5]["loss"], before[5]["loss"], before[0]["loss"])
    assert after[5]["loss"] < before[0]["loss"] - 0.15 and abs(after[5]["loss"] - before[5]["loss"]) < 0.15, losses


def test_workflow_tp2_merges_to_one_hf_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    workflow_config(tmp_path, tp=2, nproc_per_node=2, iters=10, save_interval=10, eval_interval=10)
    run_snakemake(tmp_path, "results/model/config.json")
    done = json.loads((tmp_path / "results/train/done.json").read_text())
    cfg, state = merged_checkpoint(tmp_path / done["checkpoint"])
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "results/model").eval()
    config = json.loads((tmp_path / "results/model/config.json").read_text())
    assert config["vocab_size"] == cfg.vocab_size and config["wikigpt_padded_vocab_size"] == cfg.padded_vocab_size
    assert torch.equal(hf.transformer.wte.weight.detach(), state["wte.weight"][: cfg.vocab_size])
    assert torch.equal(hf.transformer.h[0].attn.c_attn.weight.detach(), state["h.0.attn.c_attn.weight"].t())
    assert (tmp_path / "results/model/tokenizer.json").is_file()


@pytest.mark.parametrize(("train_over", "model_over", "message"), [
    ({"tp": 2, "nproc_per_node": 1}, {}, "train.nproc_per_node x train.nnodes = 1 process(es), not a multiple of "
                                         "train.tp 2"),
    ({"tp": 2, "dp": 1, "nproc_per_node": 1}, {}, "train.nproc_per_node x train.nnodes = 1 x 1 = 1 processes, but "
                                                  "train.tp x train.dp = 2 x 1 = 2"),
    ({"tp": 2, "nproc_per_node": 2}, {"n_head": 3, "n_embd": 96}, "model.n_head 3 is not divisible by train.tp 2"),
    ({"tp": 4, "nproc_per_node": 4}, {"n_head": 4, "n_embd": 66}, "model.n_embd 66 is not divisible by model.n_head 4"),
    ({"dp": 2, "nproc_per_node": 2, "nnodes": 2}, {}, "train.nproc_per_node x train.nnodes = 2 x 2 = 4 processes, "
                                                     "but train.tp x train.dp = 1 x 2 = 2"),
])
def test_layout_errors_stop_the_workflow_before_launch(tmp_path: Path, train_over: dict, model_over: dict,
                                                       message: str) -> None:
    config = workflow_config(tmp_path)
    config["train"].update(train_over)
    config["model"].update(model_over)
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", "results/model/config.json", check=False)
    assert proc.returncode != 0
    assert f"error: config: {message}" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_one_process_checkpoint_is_not_silently_dropped_by_a_parallel_run(work: Path) -> None:
    import shutil

    (work / "checkpoints" / "plain").mkdir(parents=True)
    shutil.copytree(work / "checkpoints/tp1/step_0000005", work / "checkpoints/plain/step_0000005")
    proc = subprocess.run(command(work, "plain", 2, tp=2), cwd=work, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "step_0000005: written by a one-process run; resume it with train.tp=1" in proc.stderr
    assert not (work / "plain" / "done.json").exists()


FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for SLURM's srun on one machine: start the command once per "node" (--nodes=N), wait for all.
set -u
n=1; while [ "${1#--}" != "$1" ]; do case "$1" in --nodes=*) n="${1#--nodes=}";; esac; shift; done
pids=(); for i in $(seq 0 $((n - 1))); do SLURM_NODEID=$i "$@" & pids+=($!); done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; exit $rc
"""


def test_workflow_multinode_launch_through_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rule train with train.nnodes=2: srun starts one torchrun per node meeting at the allocation's first
    host. SLURM is not here, so srun/scontrol are stand-ins that run both "nodes" on this machine."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "srun").write_text(FAKE_SRUN)
    (fake / "scontrol").write_text("#!/usr/bin/env bash\necho 127.0.0.1\n")
    for tool in ("srun", "scontrol"):
        (fake / tool).chmod(0o755)
    work = tmp_path / "wf"
    work.mkdir()
    config = workflow_config(work, tp=2, nnodes=2, nproc_per_node=1, iters=4, save_interval=4, eval_interval=4)
    config["model"]["dropout"] = 0.0
    write_config(work, config)
    proc = run_snakemake(work, "results/train/done.json", check=False)  # no allocation: a clear error
    assert proc.returncode != 0 and "train.nnodes > 1 runs inside a SLURM allocation" in proc.stderr
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[01-02]")
    run_snakemake(work, "results/model/config.json")
    done = json.loads((work / "results/train/done.json").read_text())
    assert done["iterations"] == 4
    meta = json.loads((work / done["checkpoint"] / "meta.json").read_text())
    assert (meta["tp"], meta["world_size"]) == (2, 2)
