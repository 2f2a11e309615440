"""torchrun driver: the real Trainer at tp=2 in fp16, where only the last rank's gradient overflows at one
iteration. Every rank must skip that step together (same LR step, same loss scale, same weights as each
other) and the run goes on; each rank writes what it saw to rank<r>.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the manifest and config helpers
from test_train_helpers import tiny_sections, typed  # noqa: E402

from gpt2core.training.trainer import RunPaths, Trainer  # noqa: E402

OVERFLOW_AT = 3  # 1-based iteration whose gradient overflows on the last rank only


def main() -> None:
    out = Path(sys.argv[1])
    model, train = tiny_sections(iters=6, tp=2, nproc_per_node=2, precision="fp16", save_interval=100,
                                 eval_interval=100, init_loss_scale=1024.0)
    model.update(n_head=4, n_embd=32, dropout=0.0)
    manifest = out / "manifest.json"  # written by the test (tests/test_train_helpers.write_manifest)
    trainer = Trainer(*typed(model, train), 1234, RunPaths(manifest, out / "ckpt", out / "done.json", out / "metrics.jsonl"))
    rank, world = dist.get_rank(), dist.get_world_size()
    weight = trainer.raw_model.h[0].mlp.c_fc.weight  # sharded over tp: each rank holds its own rows
    seen = {"iteration": 0}

    def overflow_here(param: torch.Tensor) -> None:
        if seen["iteration"] == OVERFLOW_AT - 1 and rank == world - 1:
            grad = param.grad.to_local() if hasattr(param.grad, "to_local") else param.grad
            grad[0, 0] = float("inf")

    weight.register_post_accumulate_grad_hook(overflow_here)
    trainer.start()
    lines = []
    for _ in range(6):
        lines.append(trainer.step())
        seen["iteration"] += 1
    replicated = trainer.raw_model.ln_f.weight  # the same on every rank unless the ranks stepped differently
    local = replicated.to_local() if hasattr(replicated, "to_local") else replicated
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local.detach().contiguous())
    (out / f"rank{rank}.json").write_text(json.dumps({
        "skipped": [line["skipped"] for line in lines], "loss_scale": [line["loss_scale"] for line in lines],
        "lr_step": trainer.state.lr_step, "ranks_agree": all(torch.equal(g, gathered[0]) for g in gathered),
        "finite": all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
                      for p in trainer.raw_model.parameters())}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
