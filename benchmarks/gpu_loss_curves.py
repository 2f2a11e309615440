"""Does a GPU lever train as well as the plain path? GPT-2 small trained for a few hundred steps on real text
(the shared enwiki excerpt, tokenized by `benchmarks/prepare_gpu_text.sh` into .gpu_data/) by the real trainer,
once plainly and once per lever from the same init and the same batches; prints the loss curves side by side
(the mean train loss of each window of steps), each lever's last window against the plain one (the anchor, same
run) and the valid loss at the end.

    python benchmarks/gpu_loss_curves.py --levers fused_add_norm,liger_loss,float8,cuda_graph   # on a GPU
    python benchmarks/gpu_loss_curves.py --smoke     # tiny CPU run of the script (plain and fused_add_norm)

A lever "trains as well" here when its last window's mean loss is within --tolerance (2%) of the plain path's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpt2core.config import ModelConfig, TrainConfig
from gpt2core.training.step import evaluate
from gpt2core.training.trainer import RunPaths, Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_gpu import model_section, schema_defaults  # noqa: E402

# the value each lever's key takes when it is on
LEVER_VALUES = {"fused_add_norm": True, "liger_loss": True, "cuda_graph": True, "float8": "rowwise",
                "loss_chunk": 4096, "half_residual": True}


def train_section(steps: int, mb: int, compiled: bool, smoke: bool, lever: str) -> dict:
    """llm.c's optimizer settings, a short warmup and cosine over `steps`, bf16 (fp32 on CPU: bf16 autocast is
    slow there), plus the lever's key. iters is one more than the steps run, so no checkpoint is written."""
    train = schema_defaults("train")
    train.update(micro_batch=mb, grad_accum=1, precision="fp32" if smoke else "bf16", compile=compiled,
                 activation_checkpointing=False, lr=6e-4, min_lr=6e-5, warmup=max(1, steps // 10),
                 iters=steps + 1, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, eval_interval=10**9,
                 save_interval=10**9, device="cpu" if smoke else "cuda", tp=1, dp=1)
    if lever != "plain":
        train[lever] = LEVER_VALUES[lever]
    return train


def curve(manifest: Path, tmp: Path, lever: str, args: argparse.Namespace) -> dict:
    """Train `args.steps` steps with `lever` on; the per-step losses, the valid loss and the time taken."""
    t0 = time.perf_counter()
    torch._dynamo.reset()
    seq = 64 if args.smoke else 1024
    model = model_section(seq, args.smoke)
    train = train_section(args.steps, args.micro_batch, args.compile, args.smoke, lever)
    trainer = Trainer(ModelConfig.from_dict(model), TrainConfig.from_dict(train), 1234,
                      RunPaths(manifest, tmp / lever, tmp / f"{lever}.json", tmp / f"{lever}.jsonl"))
    trainer.loss_fn.train()
    records = trainer.iterations()
    losses = [next(records)["loss"] for _ in range(args.steps)]
    valid = None
    if trainer.valid_source:
        valid = statistics.mean(evaluate(trainer.loss_fn, src, args.eval_iters, trainer.device)
                                for src in trainer.valid_source.values())
    return {"lever": lever, "losses": losses, "valid": valid, "seconds": time.perf_counter() - t0}


def windows(losses: list[float], size: int) -> list[float]:
    return [statistics.mean(losses[s:s + size]) for s in range(0, len(losses), size)]


def report(results: list[dict], window: int, tolerance: float) -> list[str]:
    """The curves side by side (one line a window), then each lever's last window against the plain one."""
    names = [r["lever"] for r in results]
    lines = [f"{'steps':>9s} " + " ".join(f"{n:>15s}" for n in names)]
    curves = [windows(r["losses"], window) for r in results]
    for i, row in enumerate(zip(*curves, strict=True)):
        lines.append(f"{i * window + 1:4d}-{min((i + 1) * window, len(results[0]['losses'])):<4d} "
                     + " ".join(f"{v:15.4f}" for v in row))
    lines.append(f"{'valid':>9s} " + " ".join(f"{r['valid']:15.4f}" if r["valid"] is not None else f"{'-':>15s}"
                                             for r in results))
    lines.append(f"{'seconds':>9s} " + " ".join(f"{r['seconds']:15.0f}" for r in results))
    plain = curves[0][-1]
    for r, c in zip(results[1:], curves[1:], strict=True):
        rel = c[-1] / plain - 1
        verdict = "trains as well" if abs(rel) <= tolerance else "DIFFERS"
        lines.append(f"loss curve {r['lever']}: last window {c[-1]:.4f} vs plain {plain:.4f} ({100 * rel:+.2f}%): "
                     f"{verdict} (tolerance {100 * tolerance:.0f}%)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / ".gpu_data", help="prepare_gpu_text.sh's folder")
    ap.add_argument("--levers", default="fused_add_norm,liger_loss,float8,cuda_graph",
                    help="comma-separated train keys, each trained against the plain path")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--window", type=int, default=25, help="steps averaged into one line of the curves")
    ap.add_argument("--eval-iters", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile each run (minutes more; eager default)")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no lever's run after this many seconds")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run: checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="loss_curves.json here")
    args = ap.parse_args()
    levers = [k.strip() for k in args.levers.split(",") if k.strip()]
    if args.smoke:
        args.steps, args.micro_batch, args.window, args.eval_iters = 6, 2, 3, 1
        levers = [k for k in levers if k == "fused_add_norm"] or ["fused_add_norm"]  # the others need CUDA
    unknown = [k for k in levers if k not in LEVER_VALUES]
    if unknown:
        ap.error(f"unknown lever {unknown}; known: {', '.join(LEVER_VALUES)}")
    data = args.data.resolve()
    if not (data / "results/data/manifest.json").is_file():
        sys.exit(f"error: {data}/results/data/manifest.json is missing: run bash benchmarks/prepare_gpu_text.sh")
    if not args.smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    out = args.out.resolve()
    t_all = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        os.chdir(data)  # the manifest's shard paths are relative to the folder the data stages ran in
        for lever in ["plain", *levers]:
            if lever != "plain" and time.perf_counter() - t_all > args.budget_s:
                print(f"loss curve {lever}: skipped (over --budget-s {args.budget_s:.0f})", flush=True)
                continue
            try:
                results.append(curve(Path("results/data/manifest.json"), Path(tmpdir), lever, args))
            except Exception as exc:  # one lever failing (a missing wheel, a kernel error) must not hide the rest
                print(f"loss curve {lever}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                      flush=True)
                if lever == "plain":
                    raise
            gc.collect()  # the last run's trainer (model, optimizer, a CUDA graph's pool) before the next one
            if not args.smoke:
                torch.cuda.empty_cache()
    for line in report(results, args.window, args.tolerance):
        print(line, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loss_curves.json").write_text(json.dumps(results) + "\n", encoding="utf-8")
    print(f"loss curves: {time.perf_counter() - t_all:.0f} s", flush=True)


if __name__ == "__main__":
    main()
