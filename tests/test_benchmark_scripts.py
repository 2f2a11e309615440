"""The GPU benchmark runs rarely (only when a GPU is lent), so its CPU smoke mode runs here: the script must
still drive the real trainer and the plain loop, and print its table and ratio, when the day comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_gpu_benchmark_smoke_mode_drives_the_trainer(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_BENCH_SMOKE": "1", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trainer / plain loop (eager):" in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "gpu_bench.jsonl").read_text().splitlines()]
    assert {r["row"] for r in rows} >= {"trainer seq1024 b16 bf16 eager", "plain   seq1024 b16 bf16 eager",
                                         "reference seq512 b8 ckpt fp16 eager"}
    assert all(r["tokens_per_s"] > 0 for r in rows)
