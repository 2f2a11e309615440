"""Step time of the same GPT under tp=1 (plain, one process), tp=2 and dp=2 (torchrun, gloo, CPU), each
rank on one thread; prints the ratio against the tp=1 anchor. No goal: on CPU it shows the overhead of
DTensor dispatch and the gloo collectives, not a speed-up.

    python benchmarks/bench_parallel_cpu.py [--layers 4 --hidden 256 --seq 128 --batch 8 --steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpt2core.model import GPT, GPTConfig, lm_loss


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "tp,dp,out.json" when launched by torchrun
    return p.parse_args(argv)


def step_times(args: argparse.Namespace, tp: int, dp: int) -> list[float]:
    """Run warmup + steps of forward/backward/clip/AdamW; return the measured step times (rank 0's)."""
    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as the trainer does on CPU
    cfg = GPTConfig.padded(args.vocab, 128, tp, n_positions=args.seq, n_layer=args.layers, n_head=args.heads,
                           n_embd=args.hidden)
    model = GPT(cfg)
    mesh = None
    if tp * dp > 1:
        import torch.distributed as dist

        from gpt2core.parallel import ParallelPlan, parallelize

        dist.init_process_group("gloo")
        wrapped, mesh = parallelize(model, ParallelPlan(dp=dp, tp=tp), "cpu")
    else:
        wrapped = model
    from gpt2core.parallel import tp_context
    from gpt2core.training.grads import finish_grads_, mesh_grad_norm, mesh_unscale_and_clip_

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    local = args.batch // dp
    g = torch.Generator().manual_seed(1)
    times = []
    for i in range(args.warmup + args.steps):
        data = torch.randint(0, args.vocab, (local, args.seq + 1), generator=g)
        t0 = time.perf_counter()
        with tp_context(tp > 1):
            loss = lm_loss(wrapped(data[:, :-1]), data[:, 1:])
            loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        finish_grads_(params)
        mesh_unscale_and_clip_(params, mesh_grad_norm(params, mesh), 1.0, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return times


def launch(args: argparse.Namespace, tp: int, dp: int) -> float:
    """Median step time of one layout, each rank single-threaded."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        flags = [f"--{k}={v}" for k, v in vars(args).items() if k != "worker"]
        worker = [__file__, *flags, f"--worker={tp},{dp},{out}"]
        if tp * dp == 1:
            cmd = [sys.executable, *worker]
        else:
            cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", str(tp * dp),
                   *worker]
        subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=3600)
        return statistics.median(json.loads(out.read_text()))


def main() -> None:
    args = parse()
    if args.worker:
        tp, dp, out = args.worker.split(",")
        times = step_times(args, int(tp), int(dp))
        if int(os.environ.get("RANK", 0)) == 0:
            Path(out).write_text(json.dumps(times))
        return
    torch.set_num_threads(1)
    print(f"GPT {args.layers} layers, hidden {args.hidden}, {args.heads} heads, seq {args.seq}, global batch "
          f"{args.batch}, vocab {args.vocab}; CPU, gloo, 1 thread per rank, median of {args.steps} steps")
    anchor = None
    for name, tp, dp in (("tp=1 (anchor)", 1, 1), ("tp=2", 2, 1), ("dp=2", 1, 2)):
        t = launch(args, tp, dp)
        anchor = anchor or t
        tokens = args.batch * args.seq / t
        print(f"{name:14s} step {t * 1000:8.1f} ms  {tokens:8.0f} tok/s  ratio vs tp=1 {anchor / t:5.2f}x")


if __name__ == "__main__":
    main()
