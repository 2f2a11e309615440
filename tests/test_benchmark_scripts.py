"""The GPU benchmark runs rarely (only when a GPU is lent), so its CPU smoke mode runs here: the script must
still drive the real trainer and the plain loop, and print its table and ratio, when the day comes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_file


def smoke_env(out: Path) -> dict:
    """gpu.sh in its CPU smoke mode, writing gpu_bench.jsonl to `out`, run by this interpreter."""
    return {**os.environ, "GPU_BENCH_SMOKE": "1", "OUT": str(out), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}


def test_gpu_benchmark_smoke_mode_drives_the_trainer(tmp_path: Path) -> None:
    env = smoke_env(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--profile"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trainer / plain loop (eager):" in proc.stdout
    assert "where a step's device time goes" in proc.stdout and "  matmul " in proc.stdout, proc.stdout[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert {r["row"] for r in rows} >= {"trainer seq1024 b16 bf16 eager", "plain   seq1024 b16 bf16 eager",
                                         "reference seq512 b8 ckpt fp16 eager"}
    assert all(r["tokens_per_s"] > 0 for r in rows)


def test_profile_categories_name_the_kernels_an_h100_ran() -> None:
    """Kernel names from the H100 profile in benchmarks/results land in the right category, and the idle
    share is what the kernels leave of the unprofiled step."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import breakdown, category

    named = {
        "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT": "matmul",
        "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26": "attention",
        "triton_per_fused__to_copy_add_native_layer_norm_backward_view_9": "layernorm",
        "triton_red_fused__log_softmax__log_softmax_backward_data__to_copy_": "cross-entropy",
        "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<a": "optimizer",
        "triton_poi_fused_gelu_gelu_backward_view_6": "gelu",
        "aten::addmm": "matmul",
        "triton_poi_fused_add_embedding_3": "embedding",
        "triton_poi_fused_add_mul_5": "other",
    }
    assert {k: category(k) for k in named} == named
    rows = breakdown([("nvjet_a", 30_000.0), ("flash_b", 6_000.0), ("nvjet_c", 3_000.0)], step_s=0.015, steps=3)
    assert rows == [("matmul", 11.0, 11 / 15), ("attention", 2.0, 2 / 15), ("idle (host-bound gaps)", 2.0, 2 / 15)]


def test_reshard_memory_benchmark_runs_both_ways(tmp_path: Path) -> None:
    """bench_reshard_cpu.py saves a real tp=2 checkpoint with torchrun and resumes it at tp=1 both ways (tiny
    model here; the figure in docs/speed.md is GPT-2 small)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_reshard_cpu.py"), "--layers", "1",
                           "--hidden", "64", "--heads", "2", "--vocab", "1000"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "read whole (the anchor" in proc.stdout and "grouped / whole:" in proc.stdout, proc.stdout


def test_loss_chunk_benchmark_runs_both_variants_with_equal_losses(tmp_path: Path) -> None:
    """bench_loss_chunk_cpu.py measures the plain loss and train.loss_chunk in separate processes (tiny
    model here; the figure in docs/speed.md is GPT-2 small); the two runs print the same loss curve."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_loss_chunk_cpu.py"), "--layers", "1",
                           "--hidden", "64", "--heads", "2", "--vocab", "4000", "--seq", "64", "--chunk", "48",
                           "--steps", "2"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    curves = [[float(x) for x in line.split("losses ")[1].split(", ")]
              for line in proc.stdout.splitlines() if "losses " in line]
    assert len(curves) == 2 and curves[0] == pytest.approx(curves[1], rel=1e-4, abs=1e-4), proc.stdout
    assert "loss_chunk / plain: peak RSS" in proc.stdout, proc.stdout


def test_gpu_benchmark_smoke_runs_an_extra_loss_chunk_row(tmp_path: Path) -> None:
    env = smoke_env(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--only", "eager loss-chunk"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["trainer seq1024 b16 bf16 eager loss-chunk2048"]
    assert rows[0]["tokens_per_s"] > 0


def test_gpu_benchmark_smoke_runs_an_extra_half_residual_row(tmp_path: Path) -> None:
    env = smoke_env(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--only", "eager half-residual", "--profile"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["trainer seq1024 b16 bf16 eager half-residual"]
    assert rows[0]["tokens_per_s"] > 0 and rows[0]["levers"] == ["half_residual"]


def test_gpu_benchmark_rows_name_their_options() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import row_options

    assert row_options("trainer seq1024 b16 bf16 compile half-residual", smoke=False) == {
        "loss_chunk": 0, "half_residual": True, "grad_accum": 1, "levers": {}}
    assert row_options("trainer seq1024 b16 bf16 compile loss-chunk2048", smoke=False) == {
        "loss_chunk": 2048, "half_residual": False, "grad_accum": 1, "levers": {}}
    assert row_options("trainer seq1024 b16 accum8 bf16 compile", smoke=False)["grad_accum"] == 8
    assert row_options("trainer seq1024 b32 bf16 compile half-residual float8 cuda-graph fused-add-norm",
                       smoke=False)["levers"] == {"float8": "rowwise", "cuda_graph": True, "fused_add_norm": True}
    assert row_options("trainer seq1024 b32 bf16 compile half-residual float8-tensorwise liger",
                       smoke=False)["levers"] == {"float8": "tensorwise", "liger_loss": True}


def test_gpu_benchmark_runs_the_levers_after_their_anchor() -> None:
    """gpu.sh's default selection: the current best at the default compile mode first (a budget cut keeps
    it), then each lever on top of it; the 1-GPU preset's max-autotune row only when asked for."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import select_rows

    rows = [(name,) for name in (
        "trainer seq1024 b32 bf16 compile", "trainer seq1024 b32 bf16 compile half-residual",
        "trainer seq1024 b32 bf16 compile half-residual float8", "trainer seq1024 b32 bf16 compile half-residual liger",
        "trainer seq1024 b32 accum16 bf16 max-autotune half-residual")]
    assert select_rows(rows, "trainer seq1024 b32 bf16 compile half-residual") == rows[1:4]
    assert select_rows(rows, "b32 accum16") == rows[4:]
    script = (REPO / "benchmarks/gpu.sh").read_text(encoding="utf-8")
    assert 'ROWS=(--only "trainer seq1024 b32 bf16 compile half-residual")' in script


def test_gpu_benchmark_smoke_runs_a_lever_row(tmp_path: Path) -> None:
    """A lever's row reaches the trainer with its key (train.fused_add_norm: the only lever that runs on CPU)."""
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--only", "eager fused-add-norm"],
                          env=smoke_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["trainer seq1024 b16 bf16 eager fused-add-norm"]
    assert rows[0]["tokens_per_s"] > 0 and rows[0]["levers"] == ["fused_add_norm"]  # read off the trainer


def test_gpu_loss_curves_on_the_shared_enwiki_text(tmp_path: Path) -> None:
    """prepare_gpu_text.sh tokenizes the shared enwiki excerpt with the project's own data stages; gpu.sh's
    smoke mode then trains the plain path and a lever on it and prints both curves and the verdict."""
    shared_file("enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    data = tmp_path / "gpu_data"
    env = {**smoke_env(tmp_path), "GPU_DATA": str(data)}
    prep = subprocess.run(["bash", str(REPO / "benchmarks/prepare_gpu_text.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-2000:]
    manifest = json.loads((data / "results/data/manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == 50257 and manifest["splits"]["train"]["tokens"] > 400_000
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loss curve fused_add_norm: last window" in proc.stdout and "trains as well" in proc.stdout, \
        proc.stdout[-2000:]
    curves = json.loads((tmp_path / "loss_curves.json").read_text())
    assert [c["lever"] for c in curves] == ["plain", "fused_add_norm"]
    assert curves[0]["losses"] == pytest.approx(curves[1]["losses"], rel=1e-5)  # fp32: the same curve


def test_gpu_benchmark_accumulation_row_counts_every_micro_batch(tmp_path: Path) -> None:
    """An accum8 row's tokens/s counts all 8 micro-batches of a step: about the same as one micro-batch a
    step (the work per token is the same), not an eighth of it."""
    env = smoke_env(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--only", "trainer seq1024 b16 bf16 eager,"
                           "b16 accum8 bf16 eager"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {json.loads(line)["row"]: json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()}
    one, eight = rows["trainer seq1024 b16 bf16 eager"], rows["trainer seq1024 b16 accum8 bf16 eager"]
    assert eight["step_s"] > 4 * one["step_s"]  # a step really ran 8 micro-batches
    assert 0.5 < eight["tokens_per_s"] / one["tokens_per_s"] < 3.0


def test_gpu_benchmark_only_runs_the_named_rows_in_the_order_named() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import select_rows

    rows = [("trainer b16 compile",), ("plain b16 compile",), ("trainer b16 compile cdt",), ("trainer b32 half",)]
    assert select_rows(rows, "half, cdt") == [("trainer b32 half",), ("trainer b16 compile cdt",)]
    assert select_rows(rows, "b16 compile,cdt,") == rows[:3]  # a row matched twice runs once


def test_gpu_benchmark_rows_name_their_loss_chunk() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import loss_chunk_of

    assert loss_chunk_of("trainer seq1024 b16 bf16 compile loss-chunk2048", smoke=False) == 2048
    assert loss_chunk_of("trainer seq1024 b16 bf16 compile", smoke=False) == 0
    assert loss_chunk_of("trainer seq1024 b32 bf16 compile loss-chunk4096", smoke=True) == 16


def test_gpu_benchmark_verdict_names_the_best_trainer_row() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_gpu import mfu_verdict

    results = {"trainer seq1024 b16 bf16 compile": {"mfu": 0.375}, "plain   seq1024 b16 bf16 compile": {"mfu": 0.5},
               "trainer seq1024 b32 bf16 compile": {"mfu": 0.391}, "reference seq512 b8 ckpt fp16 eager": {"mfu": 0.9}}
    assert mfu_verdict(results) == "best trainer MFU: 39.1% (trainer seq1024 b32 bf16 compile); goal >= 45%: NOT met"
    assert mfu_verdict({"trainer seq1024 b16 bf16 compile": {"mfu": 0.46}}).endswith("goal >= 45%: met")
    assert "none measured" in mfu_verdict({"trainer seq1024 b16 bf16 eager": {"mfu": None}})


def test_gpu_benchmark_cdt_rows_turn_on_coordinate_descent_tuning_for_that_row_only() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch._inductor.config as inductor_config
    from bench_gpu import inductor_options

    before = inductor_config.coordinate_descent_tuning
    with inductor_options("trainer seq1024 b16 bf16 compile cdt"):
        assert inductor_config.coordinate_descent_tuning is True
    assert inductor_config.coordinate_descent_tuning == before
    with inductor_options("trainer seq1024 b16 bf16 compile"):
        assert inductor_config.coordinate_descent_tuning == before


def test_gpu_loss_curves_flag_a_lever_that_trains_worse() -> None:
    """The verdict compares each lever's last window with the plain path's: within the tolerance it trains as
    well, beyond it (either way) it DIFFERS; the curves print one line a window."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_loss_curves import report

    plain = {"lever": "plain", "losses": [10.0, 8.0, 6.0, 5.0], "valid": 5.5, "seconds": 10.0}
    close = {"lever": "float8", "losses": [10.0, 8.1, 6.1, 5.05], "valid": 5.6, "seconds": 8.0}
    worse = {"lever": "cuda_graph", "losses": [10.0, 8.0, 6.5, 5.5], "valid": None, "seconds": 7.0}
    lines = report([plain, close, worse], window=2, tolerance=0.02)
    assert lines[1].split() == ["1-2", "9.0000", "9.0500", "9.0000"]
    assert lines[-2] == "loss curve float8: last window 5.5750 vs plain 5.5000 (+1.36%): trains as well (tolerance 2%)"
    assert lines[-1] == "loss curve cuda_graph: last window 6.0000 vs plain 5.5000 (+9.09%): DIFFERS (tolerance 2%)"


@pytest.mark.e2e
def test_scale_benchmark_runs_the_real_dag_on_a_multi_part_dump(tmp_path: Path) -> None:
    """bench_scale.py at a few MB: every stage row, the anchor and the projection print, and no page is lost as
    a duplicate (the documents grow with the copies)."""
    from conftest import shared_file

    shared_file("enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_scale.py"), "--gb", "0.012", "--parts", "2",
                           "--cores", "2", "--workdir", str(tmp_path / "w"), "--keep"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for stage in ("download", "extract", "presplit", "tokenizer", "split_plan", "tokenize", "gather"):
        assert re.search(rf"^{stage}\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+$", out, re.M), (stage, out)
    assert "anchor, WikiExtractor on one" in out and "x the seed's" in out
    assert "projection: enwiki" in out and "total" in out
    manifest = json.loads((tmp_path / "w/results/data/manifest.json").read_text())
    documents = sum(s["documents"] for s in manifest["splits"].values())
    assert documents > 105, documents  # one copy of the excerpt keeps at most its 105 articles
    assert manifest["corpora"][0]["markup"]["entities"] == 0
