"""A small training loop over gpt2core's GPT under gpt2core.parallel, launched by torchrun in the tests.

Every layout starts from the same weights (initialised at the tp=1 padding, then padded with zero rows)
and reads the same global batches (a pure function of the step; dp ranks take equal slices), so the
per-step losses and the merged final weights of any (tp, dp) must match a single-process run.
Writes <out>/result.pt on rank 0: losses, grad norms, merged (tp=1 layout) weights, full logits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from gpt2core.export.merge import merge_tp_state
from gpt2core.model import GPT, GPTConfig, lm_loss
from gpt2core.parallel import (
    ParallelPlan,
    dp_rank_and_size,
    full_logits,
    init_model,
    local_loss,
    parallelize,
    tp_context,
)
from gpt2core.training.checkpoint import sharded as dist_checkpoint
from gpt2core.training.checkpoint.plain import latest_checkpoint
from gpt2core.training.checkpoint.sharded import load_sharded, save_sharded
from gpt2core.training.distributed import any_rank
from gpt2core.training.grads import finish_grads_, mesh_grad_norm, mesh_unscale_and_clip_

VOCAB = 1100  # padded 1152 at tp=1, 1280 at tp=2 and tp=4: the merge has padding to trim
GLOBAL_BATCH, SEQ = 8, 16


def tiny_config(tp: int) -> GPTConfig:
    return GPTConfig.padded(VOCAB, 128, tp, n_positions=32, n_layer=2, n_head=4, n_embd=64)


def build(tp: int, seed: int) -> GPT:
    """Weights from the tp=1 init, the embedding padded with zero rows up to the tp padding."""
    return init_model(tiny_config(tp), seed)


def batch(step: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1000 + step)
    shape = (GLOBAL_BATCH, SEQ + 1)  # mostly 48 frequent ids (learnable), some from the whole vocabulary
    frequent = torch.randint(0, 48, shape, generator=g) * (VOCAB // 48)
    data = torch.where(torch.rand(shape, generator=g) < 0.8, frequent, torch.randint(0, VOCAB, shape, generator=g))
    return data[:, :-1], data[:, 1:]


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone()
            for k, v in model.state_dict().items() if k != "lm_head.weight"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--dp", type=int, default=1)
    p.add_argument("--sp", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ckpt", type=Path, help="checkpoint root: resume from its newest step, save every --save-every")
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--kill", help="RANK:STEP: that rank SIGKILLs itself after STEP (fresh runs only)")
    p.add_argument("--read-group-bytes", type=int, help="resharding reads full tensors in groups of this size")
    args = p.parse_args()
    if args.read_group_bytes:
        dist_checkpoint.READ_GROUP_BYTES = args.read_group_bytes

    torch.use_deterministic_algorithms(True)
    dist.init_process_group("gloo")
    plan = ParallelPlan(dp=args.dp, tp=args.tp, sequence_parallel=args.sp)
    raw = build(args.tp, args.seed)
    model, mesh = parallelize(raw, plan, "cpu")
    opt = torch.optim.AdamW(raw.parameters(), lr=args.lr, weight_decay=0.01, foreach=True)
    dp_rank, dp_size = dp_rank_and_size(mesh)
    rank = dist.get_rank()
    start, losses, norms = 0, [], []
    model_cfg = tiny_config(args.tp).to_dict()
    if args.ckpt is not None and (latest := latest_checkpoint(args.ckpt)) is not None:
        meta = load_sharded(latest, raw, opt, model_cfg, args.tp)
        start, losses, norms = meta["step"], meta["losses"], meta["norms"]
    resumed = start > 0
    local = GLOBAL_BATCH // dp_size
    for step in range(start, args.steps):
        x, y = batch(step, args.seed)
        x, y = x[dp_rank * local:(dp_rank + 1) * local], y[dp_rank * local:(dp_rank + 1) * local]
        with tp_context(args.tp > 1):
            loss = lm_loss(model(x), y)
            loss.backward()
        value = local_loss(loss).detach().clone()
        dist.all_reduce(value, group=mesh.get_group("dp"))
        params = [q for q in raw.parameters() if q.grad is not None]
        finish_grads_(params)
        norm = mesh_grad_norm(params, mesh)
        assert not any_rank(not bool(torch.isfinite(norm)), torch.device("cpu"))
        mesh_unscale_and_clip_(params, norm, 1.0, max_norm=1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(value) / dp_size)
        norms.append(float(norm))
        if args.ckpt is not None and args.save_every and (step + 1) % args.save_every == 0:
            save_sharded(args.ckpt, step + 1, raw, opt, {"model_config": model_cfg, "tp": args.tp, "dp": args.dp,
                                                          "losses": losses, "norms": norms}, keep_last=2)
        if args.kill and not resumed:
            kill_rank, kill_step = map(int, args.kill.split(":"))
            if rank == kill_rank and step + 1 == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)
    state = full_state(raw)
    probe = batch(10_000, args.seed)[0][:2]
    with torch.no_grad(), tp_context(args.tp > 1):
        logits = full_logits(model(probe))
    if args.ckpt is not None:
        save_sharded(args.ckpt, args.steps, raw, opt, {"model_config": model_cfg, "tp": args.tp, "dp": args.dp,
                                                        "losses": losses, "norms": norms}, keep_last=2)
    if rank == 0:
        _, merged = merge_tp_state(state, tiny_config(args.tp), args.tp)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"losses": losses, "norms": norms, "state": merged, "logits": logits, "probe": probe,
                    "resumed_from": start}, args.out / "result.pt")
        (args.out / "losses.json").write_text(json.dumps(losses))
    dist.barrier()  # every rank done with its gloo work before any tears it down (a rank once aborted here)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
