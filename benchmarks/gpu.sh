#!/usr/bin/env bash
# The GPU checks in one call, in under 8 minutes on a fresh machine:
#   1. training throughput and MFU of the real trainer (benchmarks/bench_gpu.py), the current best at the
#      default compile mode first (GPT-2 small, seq 1024, micro-batch 32, bf16, half-residual: the anchor,
#      42.6% on an H100 at 81055de), then each GPU lever on top of it (float8, cuda-graph, liger and ours
#      loss-chunk4096, fused-add-norm, the levers together; docs/gpu-levers.md). Rows stop starting after
#      TRAIN_BUDGET_S=250 s (a fresh machine compiles each row for 40-60 s), so a cut keeps the anchor;
#   2. whether each lever trains as well: GPT-2 small for 300 steps on real text (the shared enwiki excerpt,
#      tokenized into .gpu_data/ by benchmarks/prepare_gpu_text.sh, carried with the run), the plain path's
#      loss curve next to each lever's (benchmarks/gpu_loss_curves.py; eager, budget LOSS_BUDGET_S=100 s);
#   3. with EVAL=1, evaluation tokens/s vs transformers' GPT2LMHeadModel forward (bench_eval.py, ~25 s more).
# Goals: >= 50% MFU on an H100 (989 TFLOP/s dense bf16; >= 578K tokens/s at seq 1024); trainer/plain >= 0.97x.
# Packages the GPU machine lacks (liger-kernel, torchao) travel as wheels in .whl/
# (benchmarks/fetch_gpu_wheels.sh); this script installs them into /tmp/site when .whl/ holds any.
#   bash benchmarks/gpu.sh                                 # on the GPU machine, from anywhere
#   bash benchmarks/gpu.sh --only "b32 accum16"            # the 1-GPU preset's row (max-autotune: ~4 min)
#   bash benchmarks/gpu.sh --only "b16 bf16 compile" --profile   # other rows (bench_gpu.py's docstring)
#   GPU_BENCH_SMOKE=1 bash benchmarks/gpu.sh               # tiny CPU run: checks the scripts, measures nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
GPU_DATA="${GPU_DATA:-$PWD/.gpu_data}"
if [[ -n "${GPU_BENCH_SMOKE:-}" ]]; then
  "$PY" benchmarks/bench_gpu.py --smoke --out "$OUT" "$@"
  if [[ -f "$GPU_DATA/results/data/manifest.json" ]]; then
    "$PY" benchmarks/gpu_loss_curves.py --smoke --data "$GPU_DATA" --out "$OUT"
  fi
  exit 0
fi
if compgen -G ".whl/*.whl" > /dev/null; then  # no package index there: the wheels carried with the run
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
ROWS=(--only "trainer seq1024 b32 bf16 compile half-residual")
[[ $# -gt 0 ]] && ROWS=("$@")
"$PY" benchmarks/bench_gpu.py --budget-s "${TRAIN_BUDGET_S:-250}" --out "$OUT" "${ROWS[@]}"
if [[ $# -eq 0 ]]; then
  if [[ -f "$GPU_DATA/results/data/manifest.json" ]]; then
    "$PY" benchmarks/gpu_loss_curves.py --data "$GPU_DATA" --budget-s "${LOSS_BUDGET_S:-100}" --out "$OUT"
  else
    echo "loss curves: skipped ($GPU_DATA/results/data/manifest.json missing: run benchmarks/prepare_gpu_text.sh here and carry .gpu_data)"
  fi
fi
[[ -z "${EVAL:-}" ]] || "$PY" benchmarks/bench_eval.py --device cuda --seq-len 1024 --windows 257 --batch-size 16 --repeats 3
echo "gpu.sh: ${SECONDS} s in all (goal: under 480 s)"
