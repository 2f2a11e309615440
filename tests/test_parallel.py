"""Tensor/data parallelism through real torchrun (gloo, CPU): every layout trains the same tiny GPT from
the same init on the same global batches, and must match the single-process run (issue 4's tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2core.errors import WikiGPTError
from gpt2core.export.merge import merged_model
from gpt2core.export.run import export_checkpoint

BIN = Path(sys.executable).parent
DRIVERS = Path(__file__).parent / "parallel_drivers"
TOL = 1e-5

pytestmark = pytest.mark.e2e


def torchrun(nproc: int, script: str, *args: str, extra: tuple[str, ...] = ("--standalone",),
             check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "torchrun"), *extra, "--nproc-per-node", str(nproc), str(DRIVERS / script), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def result(out: Path) -> dict:
    return torch.load(out / "result.pt", weights_only=True)


def assert_same_run(ref: dict, got: dict, tol: float = TOL) -> None:
    assert len(ref["losses"]) == len(got["losses"]) == 10
    for step, (a, b) in enumerate(zip(ref["losses"], got["losses"], strict=True)):
        assert abs(a - b) <= tol, f"step {step + 1}: loss {a} vs {b}"
    assert ref["state"].keys() == got["state"].keys()
    for key, a in ref["state"].items():
        b = got["state"][key]
        assert a.shape == b.shape, key
        diff = (a - b).abs().max().item()
        assert diff <= tol, f"{key}: final weights differ by {diff}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parallel")
    torchrun(1, "train_loop.py", "--out", str(root / "tp1"))
    return root


def test_tp2_matches_tp1(runs: Path) -> None:
    torchrun(2, "train_loop.py", "--tp", "2", "--out", str(runs / "tp2"), "--ckpt", str(runs / "ck_tp2"))
    ref, got = result(runs / "tp1"), result(runs / "tp2")
    assert_same_run(ref, got)
    assert ref["losses"][-1] < ref["losses"][0]  # it trains


def test_dp2_matches_dp1_at_the_same_global_batch(runs: Path) -> None:
    torchrun(2, "train_loop.py", "--dp", "2", "--out", str(runs / "dp2"))
    assert_same_run(result(runs / "tp1"), result(runs / "dp2"))


def test_sequence_parallel_matches(runs: Path) -> None:
    torchrun(2, "train_loop.py", "--tp", "2", "--sp", "--out", str(runs / "sp2"))
    assert_same_run(result(runs / "tp1"), result(runs / "sp2"))


def test_dp2_tp2_on_four_processes_matches(runs: Path) -> None:
    torchrun(4, "train_loop.py", "--tp", "2", "--dp", "2", "--out", str(runs / "dp2tp2"))
    assert_same_run(result(runs / "tp1"), result(runs / "dp2tp2"))


def test_merged_tp2_model_gives_the_tp2_logits_and_loads_in_transformers(runs: Path) -> None:
    from transformers import GPT2LMHeadModel

    ckpt = runs / "ck_tp2" / "step_0000010"
    if not ckpt.is_dir():
        torchrun(2, "train_loop.py", "--tp", "2", "--out", str(runs / "tp2"), "--ckpt", str(runs / "ck_tp2"))
    tp2 = result(runs / "tp2")
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["tp"] == 2 and meta["model_config"]["padded_vocab_size"] == 1280
    export_checkpoint(ckpt, runs / "hf")
    hf = GPT2LMHeadModel.from_pretrained(runs / "hf").eval()
    assert hf.config.vocab_size == 1100 and hf.config.wikigpt_padded_vocab_size == 1152
    with torch.no_grad():
        logits = hf(tp2["probe"]).logits
    assert (logits - tp2["logits"][..., :1100]).abs().max().item() <= TOL
    assert torch.isinf(tp2["logits"][..., 1100:]).all()  # padded ids masked in the tp=2 model
    merged = merged_model(ckpt)  # our GPT from the merge: the same weights the tp=2 run ended with
    for key, value in tp2["state"].items():
        assert torch.allclose(merged.state_dict()[key], value, atol=0, rtol=0), key


def test_resume_after_kill9_of_one_rank_is_exact(runs: Path) -> None:
    out, ck = runs / "killed", runs / "ck_killed"
    killed = torchrun(2, "train_loop.py", "--tp", "2", "--out", str(out), "--ckpt", str(ck), "--save-every", "3",
                      "--kill", "1:5", check=False)
    assert killed.returncode != 0
    assert [p.name for p in ck.iterdir()] == ["step_0000003"]  # nothing but the complete save
    torchrun(2, "train_loop.py", "--tp", "2", "--out", str(out), "--ckpt", str(ck), "--save-every", "3")
    got = result(out)
    assert got["resumed_from"] == 3
    if not (runs / "tp2" / "result.pt").exists():
        torchrun(2, "train_loop.py", "--tp", "2", "--out", str(runs / "tp2"), "--ckpt", str(runs / "ck_tp2"))
    ref = result(runs / "tp2")
    assert got["losses"] == ref["losses"]
    for key, value in ref["state"].items():
        assert torch.equal(got["state"][key], value), key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_match_a_single_node_run(runs: Path) -> None:
    port = _free_port()
    out = runs / "two_nodes"
    common = ("--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
              "--rdzv-id", "wikigpt-test")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([str(BIN / "torchrun"), *common, "--node-rank", str(node), "--nproc-per-node", "1",
                               str(DRIVERS / "train_loop.py"), "--tp", "2", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for node in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
    assert_same_run(result(runs / "tp1"), result(out))


def test_fp16_overflow_on_one_rank_makes_every_rank_skip(tmp_path: Path) -> None:
    torchrun(2, "overflow.py", str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["skip"] for r in ranks)
    assert all(r["norm"] == "inf" for r in ranks)
    assert ranks[0]["clean"] == ranks[1]["clean"] > 0


def test_fp16_overflow_on_one_rank_skips_the_step_on_every_rank_of_the_real_trainer(tmp_path: Path) -> None:
    """The Trainer at tp=2, fp16: the last rank alone overflows at iteration 3. Every rank books the skip
    (halving the loss scale, not advancing the LR), the replicated weights stay equal across ranks, and the
    run goes on with finite weights."""
    from test_train_helpers import write_manifest

    write_manifest(tmp_path)
    torchrun(2, "trainer_overflow.py", str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["skipped"] == [False, False, True, False, False, False]
    assert ranks[0]["loss_scale"][2] == 2 * ranks[0]["loss_scale"][3]  # halved after the overflow
    assert ranks[0]["lr_step"] == 5 and ranks[0]["ranks_agree"] and ranks[0]["finite"]


def test_incomplete_sharded_checkpoint_is_a_hard_error(runs: Path, tmp_path: Path) -> None:
    import shutil

    src = runs / "ck_tp2" / "step_0000010"
    if not src.is_dir():
        torchrun(2, "train_loop.py", "--tp", "2", "--out", str(runs / "tp2"), "--ckpt", str(runs / "ck_tp2"))
    broken = tmp_path / "step_0000010"
    shutil.copytree(src, broken)
    next(broken.glob("dcp/*.distcp")).unlink()
    with pytest.raises(WikiGPTError, match="dcp"):
        export_checkpoint(broken, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    (broken / "dcp" / ".metadata").unlink()
    with pytest.raises(WikiGPTError, match=r"\.metadata"):
        export_checkpoint(broken, tmp_path / "hf")
    (broken / "meta.json").unlink()
    with pytest.raises(WikiGPTError, match="meta.json"):
        export_checkpoint(broken, tmp_path / "hf")


def test_resume_under_another_tp_reshards(runs: Path) -> None:
    """tp=2 for 5 steps, then the same checkpoint resumed with tp=1 (and tp=1 -> tp=2 with sequence
    parallelism): the run continues as if it had always had the new layout. The second resume reads the
    full tensors in groups of 4 KiB (many collective reads), as a large model does in groups of 256 MiB."""
    torchrun(2, "train_loop.py", "--tp", "2", "--steps", "5", "--out", str(runs / "rs_a"), "--ckpt", str(runs / "ck_rs"))
    torchrun(1, "train_loop.py", "--out", str(runs / "rs_a"), "--ckpt", str(runs / "ck_rs"))
    got = result(runs / "rs_a")
    assert got["resumed_from"] == 5
    assert_same_run(result(runs / "tp1"), got)
    torchrun(1, "train_loop.py", "--steps", "5", "--out", str(runs / "rs_b"), "--ckpt", str(runs / "ck_rs_b"))
    torchrun(2, "train_loop.py", "--tp", "2", "--sp", "--out", str(runs / "rs_b"), "--ckpt", str(runs / "ck_rs_b"),
             "--read-group-bytes", "4096")
    got = result(runs / "rs_b")
    assert got["resumed_from"] == 5
    assert_same_run(result(runs / "tp1"), got)
