#!/usr/bin/env bash
# The wheels of the GPU levers' optional packages for the GPU machine (Python 3.12, torch 2.11+cu130 there, no
# package index), into .whl/ (ignored by git, never committed), which travels with a GPU run as
# `carry: [".whl", ".gpu_data"]`; benchmarks/gpu.sh installs whatever .whl/ holds into /tmp/site.
#   liger-kernel 0.8.5: pure Python + Triton kernels (train.liger_loss); needs torch >= 2.1.2 and triton, which
#                       the GPU machine has (3.6.0), so --no-deps;
#   torchao 0.17.0:     train.float8; the first release whose prebuilt extensions are built against torch 2.11
#                       (its float8 training itself is Python over torch._scaled_mm). It needs no other package.
# Run here, once, before the GPU call (about 5 MB):
#   bash benchmarks/fetch_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mkdir -p .whl
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "liger-kernel==${LIGER_VERSION:-0.8.5}" "torchao==${TORCHAO_VERSION:-0.17.0}"
ls -l .whl
