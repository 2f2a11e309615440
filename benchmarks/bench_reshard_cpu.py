"""Host memory of resuming a tensor-parallel checkpoint under another tp (resharding), on CPU with gloo.

A GPT-2 small (124M) run at tp=2 takes one AdamW step and saves a sharded checkpoint; a tp=1 process then
resumes it twice: reading the full saved tensors in bounded groups (gpt2core.training.checkpoint.sharded.READ_GROUP_BYTES,
what the trainer does) and, as the anchor, in one group (the whole model and optimizer at once, as before).
Prints each resume's peak RSS and the ratio.

    python benchmarks/bench_reshard_cpu.py [--layers 12 --hidden 768 --heads 12]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "save,DIR" or "resume,DIR,GROUP_BYTES,OUT.json"
    return p.parse_args(argv)


def model_and_optimizer(args: argparse.Namespace, tp: int):
    import torch.distributed as dist

    from gpt2core.model import GPTConfig
    from gpt2core.parallel import ParallelPlan, init_model, parallelize

    dist.init_process_group("gloo")
    cfg = GPTConfig.padded(args.vocab, 128, tp, n_positions=64, n_layer=args.layers, n_head=args.heads,
                           n_embd=args.hidden)
    raw = init_model(cfg, 1234)
    model, _ = parallelize(raw, ParallelPlan(tp=tp), "cpu")
    return cfg, raw, model, torch.optim.AdamW(raw.parameters(), lr=1e-4, foreach=True)


def save(args: argparse.Namespace, root: Path) -> None:
    """tp=2: one training step (so AdamW has its moments), then a sharded checkpoint."""
    import torch.distributed as dist

    from gpt2core.model import lm_loss
    from gpt2core.parallel import tp_context
    from gpt2core.training.checkpoint.sharded import save_sharded

    cfg, raw, model, opt = model_and_optimizer(args, 2)
    tokens = torch.randint(0, args.vocab, (1, 65), generator=torch.Generator().manual_seed(0))
    with tp_context(True):
        lm_loss(model(tokens[:, :-1]), tokens[:, 1:]).backward()
    opt.step()
    save_sharded(root, 1, raw, opt, {"model_config": cfg.to_dict(), "tp": 2, "dp": 1}, keep_last=1)
    dist.destroy_process_group()


def resume(args: argparse.Namespace, root: Path, group_bytes: int, out: Path) -> None:
    """tp=1: resume the tp=2 checkpoint, reading `group_bytes` of full tensors at a time; write peak RSS."""
    import torch.distributed as dist

    from gpt2core.training.checkpoint import sharded as dist_checkpoint
    from gpt2core.training.checkpoint.plain import latest_checkpoint

    cfg, raw, _, opt = model_and_optimizer(args, 1)
    dist_checkpoint.READ_GROUP_BYTES = group_bytes
    dist_checkpoint.load_sharded(latest_checkpoint(root), raw, opt, cfg.to_dict(), 1)
    out.write_text(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    dist.destroy_process_group()


def torchrun(nproc: int, worker: str, args: argparse.Namespace) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           __file__, "--layers", str(args.layers), "--hidden", str(args.hidden), "--heads", str(args.heads),
           "--vocab", str(args.vocab), "--worker", worker]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, check=True, env=env, timeout=3600)


def main() -> None:
    args = parse()
    if args.worker:
        kind, root, *rest = args.worker.split(",")
        if kind == "save":
            save(args, Path(root))
        else:
            resume(args, Path(root), int(rest[0]), Path(rest[1]))
        return
    from gpt2core.training.checkpoint.sharded import READ_GROUP_BYTES

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ckpt"
        torchrun(2, f"save,{root}", args)
        peaks = {}
        for label, group in (("grouped", READ_GROUP_BYTES), ("whole", 1 << 62)):
            out = Path(tmp) / f"{label}.json"
            torchrun(1, f"resume,{root},{group},{out}", args)
            peaks[label] = json.loads(out.read_text())["peak_rss_mb"]
    print(f"model {args.layers}L/{args.hidden}d, tp=2 checkpoint resumed at tp=1")
    print(f"peak RSS, read in {READ_GROUP_BYTES >> 20} MiB groups: {peaks['grouped']:.0f} MB")
    print(f"peak RSS, read whole (the anchor, as before): {peaks['whole']:.0f} MB")
    print(f"grouped / whole: {peaks['grouped'] / peaks['whole']:.2f}x "
          f"({peaks['whole'] - peaks['grouped']:.0f} MB less)")


if __name__ == "__main__":
    main()
