"""Peak memory and step time of a training step with `train.loss_chunk` (the output layer and cross-entropy
by chunks) against the plain loss over the full (B, T, V) logits, the anchor, measured in the same run.

Each variant runs in its own process (peak RSS is per process): GPT-2 small by default, fp32 on CPU, the
real `CausalLMLoss` the trainer calls, backward and an AdamW step; `--steps` timed steps after one warm-up.

    python benchmarks/bench_loss_chunk_cpu.py                        # GPT-2 small, seq 1024, batch 4
    python benchmarks/bench_loss_chunk_cpu.py --layers 1 --hidden 64 --heads 2 --vocab 4000 --seq 64
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from gpt2core.model import GPT, GPTConfig
from gpt2core.training.optimizer import param_groups
from gpt2core.training.step import CausalLMLoss


def measure(args: argparse.Namespace, loss_chunk: int) -> dict:
    """One variant in this process: median step time and this process's peak RSS."""
    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as the trainer does on CPU
    cfg = GPTConfig.padded(args.vocab, 128, n_layer=args.layers, n_head=args.heads, n_embd=args.hidden,
                           n_positions=args.seq)
    model = GPT(cfg)
    loss_fn = CausalLMLoss(model, "fp32", torch.device("cpu"), loss_chunk=loss_chunk)
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=g)
    mask = torch.ones(args.batch, args.seq)
    times, losses = [], []
    for _ in range(1 + args.steps):
        t0 = time.perf_counter()
        loss = loss_fn(tokens[:, :-1], tokens[:, 1:], mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    dt = statistics.median(times[1:])
    return {"loss_chunk": loss_chunk, "step_s": dt, "tokens_per_s": args.batch * args.seq / dt,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1024, help="train.loss_chunk of the measured variant")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variant", type=int, default=None, help=argparse.SUPPRESS)  # child process: one variant
    args = ap.parse_args()
    if args.variant is not None:
        print(json.dumps(measure(args, args.variant)))
        return
    results = {}
    for chunk in (0, args.chunk):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", str(chunk)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
        results[chunk] = json.loads(proc.stdout.strip().splitlines()[-1])
    plain, chunked = results[0], results[args.chunk]
    n_logits = args.batch * args.seq * GPTConfig.padded(args.vocab, 128).padded_vocab_size
    print(f"GPT {args.layers}L/{args.hidden}d/{args.heads}h, vocab {args.vocab}, seq {args.seq}, batch {args.batch}, "
          f"fp32, {torch.get_num_threads()} threads; the full logits: {n_logits * 4 / 2**20:,.0f} MB in fp32")
    for label, r in (("plain loss (the anchor)", plain), (f"loss_chunk {args.chunk}", chunked)):
        print(f"  {label:26s} peak RSS {r['peak_rss_mb']:8,.0f} MB  step {r['step_s']:7.2f} s  "
              f"{r['tokens_per_s']:8,.0f} tok/s  losses {', '.join(f'{x:.4f}' for x in r['losses'])}")
    print(f"loss_chunk / plain: peak RSS {chunked['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x "
          f"({plain['peak_rss_mb'] - chunked['peak_rss_mb']:,.0f} MB less), "
          f"tokens/s {chunked['tokens_per_s'] / plain['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
