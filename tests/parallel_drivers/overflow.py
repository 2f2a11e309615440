"""torchrun driver: only the last rank sees an inf gradient; every rank must decide to skip the step, and
the global grad norm (DTensor shards + replicated params) must be inf everywhere too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from gpt2core.model import GPT, GPTConfig, lm_loss
from gpt2core.parallel import (
    ParallelPlan,
    parallelize,
    tp_context,
)
from gpt2core.training.distributed import any_rank
from gpt2core.training.grads import finish_grads_, mesh_grad_norm


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = GPT(GPTConfig.padded(300, 64, world, n_positions=16, n_layer=1, n_head=2, n_embd=16))
    wrapped, mesh = parallelize(model, ParallelPlan(dp=1, tp=world), "cpu")
    x = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    with tp_context(True):
        lm_loss(wrapped(x[:, :-1]), x[:, 1:]).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    finish_grads_(params)
    clean = float(mesh_grad_norm(params, mesh))
    if rank == world - 1:  # a local overflow in one shard of one rank only
        model.h[0].mlp.c_fc.weight.grad.to_local()[0, 0] = float("inf")
    norm = float(mesh_grad_norm(params, mesh))
    local_flag = rank == world - 1
    decision = any_rank(local_flag, torch.device("cpu"))
    (out / f"rank{rank}.json").write_text(json.dumps({"clean": clean, "norm": str(norm), "skip": decision}))
    dist.barrier()  # every rank done with its gloo work before any tears it down (a rank once aborted here)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
