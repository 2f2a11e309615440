#!/usr/bin/env bash
# GPU training throughput of gpt2core's step (the trainer's own functions: autocast, fp16 loss scaling,
# global grad norm + clipping, fused AdamW) for GPT-2 small at seq 1024 in bf16 and fp16, eager and
# torch.compile, plus the reference's own config (seq 512, batch 8, activation checkpointing, fp16).
# Prints tokens/s and MFU against the device's dense 16-bit peak (gpt2core.training.flops).
# Anchors: nanoGPT 37% MFU on A100, llm.c ~40% on H100; goal >= 45% on an H100. Runs in < 5 minutes.
#   bash benchmarks/gpu.sh                 # on a GPU machine, from the repository root
#   GPU_BENCH_SMOKE=1 bash benchmarks/gpu.sh   # a tiny CPU run that only checks the script works
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
exec "$PY" - "$@" <<'PYEOF'
import os, time
import torch
from gpt2core.model import GPTConfig
from gpt2core.train import autocast_ctx, build_model, forward_backward
from gpt2core.loader import Batch
from gpt2core.training.flops import flops_per_token, peak_flops
from gpt2core.training.grads import global_grad_norm, unscale_and_clip_
from gpt2core.training.loss_scale import DynamicLossScaler
from gpt2core.training.optimizer import build_optimizer

smoke = bool(os.environ.get("GPU_BENCH_SMOKE"))
device = torch.device("cpu" if smoke else "cuda")
if not smoke:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
steps, warmup = (2, 1) if smoke else (int(os.environ.get("STEPS", 20)), 5)

# (name, seq, micro_batch, precision, compile, activation checkpointing)
runs = [("gpt2-124M seq1024 bf16", 1024, 16, "bf16", False, False),
        ("gpt2-124M seq1024 bf16 compile", 1024, 16, "bf16", True, False),
        ("gpt2-124M seq1024 fp16", 1024, 16, "fp16", False, False),
        ("gpt2-124M seq1024 fp16 compile", 1024, 16, "fp16", True, False),
        ("reference seq512 b8 ckpt fp16", 512, 8, "fp16", False, True),
        ("reference seq512 b8 ckpt fp16 compile", 512, 8, "fp16", True, True)]
if smoke:
    runs = [(n, 32, 2, p, False, a) for n, _, _, p, c, a in runs if not c]

for name, seq, mb, precision, compiled, ckpt in runs:
    t_start = time.perf_counter()
    kw = dict(n_positions=seq) if not smoke else dict(n_positions=seq, n_layer=2, n_head=2, n_embd=32)
    cfg = GPTConfig.padded(50257, 128, **kw)
    model = build_model(cfg, {"activation_checkpointing": ckpt}, 1234).to(device)
    opt = build_optimizer(model, 1.5e-4, 0.01, (0.9, 0.999), 1e-8, device.type)
    scaler = DynamicLossScaler(65536.0, 2000, 50, enabled=precision == "fp16")
    fwd = torch.compile(model) if compiled else model
    gen = torch.Generator(device="cpu").manual_seed(0)

    def batch() -> Batch:
        tok = torch.randint(0, 50257, (mb, seq + 1), generator=gen).to(device, non_blocking=True)
        return Batch(tok[:, :-1], tok[:, 1:], torch.ones(mb, seq, device=device))

    def step() -> None:
        scale = scaler.scale
        forward_backward(fwd, [batch()], scale, precision, device)
        params = [p for p in model.parameters() if p.grad is not None]
        norm = global_grad_norm(params) / scale
        if not scaler.update(not bool(torch.isfinite(norm)), 0):
            unscale_and_clip_(params, norm * scale, 1.0 / scale, 1.0)
            opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tps = mb * seq / dt
    peak = peak_flops(device, precision)
    mfu = f"{100 * flops_per_token(cfg, seq) * tps / peak:5.1f}%" if peak else "  n/a"
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    print(f"{name:40s} {tps:10.0f} tok/s  MFU {mfu}  step {dt * 1000:7.1f} ms  mem {mem:5.1f} GiB"
          f"  ({time.perf_counter() - t_start:.0f} s incl. warm-up/compile)", flush=True)
    del model, opt, fwd
    if device.type == "cuda":
        torch.cuda.empty_cache()
PYEOF
