#!/usr/bin/env bash
# The GPU checks in one call, in under 5 minutes on a fresh machine (the training rows stop starting after
# TRAIN_BUDGET_S=170 s; a fresh machine compiles each compiled row for 35-55 s):
#   1. training throughput and MFU of the real trainer for GPT-2 small at seq 1024 in bf16 and fp16, eager
#      and compiled, and the reference's config (seq 512, batch 8, activation checkpointing, fp16); the
#      plain-loop anchor for "the parallel-capable trainer costs nothing at tp=1" (benchmarks/bench_gpu.py);
#   2. evaluation tokens/s vs transformers' GPT2LMHeadModel forward on the same windows (bench_eval.py).
# Goals: >= 45% MFU on an H100 (nanoGPT 37% on A100, llm.c ~40% on H100); trainer/plain >= 0.97x.
#   bash benchmarks/gpu.sh                          # on the GPU machine, from anywhere
#   bash benchmarks/gpu.sh --only max-autotune,reduce-overhead   # the extra rows (SKIP_EVAL=1 to skip eval)
#   bash benchmarks/gpu.sh --only "b16 bf16 compile" --profile   # + the first trainer row's step by category
#   GPU_BENCH_SMOKE=1 bash benchmarks/gpu.sh        # tiny CPU run: checks the script, measures nothing
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
if [[ -n "${GPU_BENCH_SMOKE:-}" ]]; then
  "$PY" benchmarks/bench_gpu.py --smoke --out "$OUT" "$@"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
"$PY" benchmarks/bench_gpu.py --budget-s "${TRAIN_BUDGET_S:-170}" --out "$OUT" "$@"
[[ -n "${SKIP_EVAL:-}" ]] || "$PY" benchmarks/bench_eval.py --device cuda --seq-len 1024 --windows 257 --batch-size 16 --repeats 3
echo "gpu.sh: ${SECONDS} s in all (goal: under 300 s)"
