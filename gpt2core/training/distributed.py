"""Where the trainer meets torchrun: process-group setup, the device, and the hooks a parallel run
replaces (apply_parallelism, the cross-rank reductions). One process: the hooks are no-ops, and
torch.distributed is initialised only when torchrun launched more than one rank (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from gpt2core.config import ParallelPlan


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int) -> torch.device:
    """`auto` takes CUDA when present; `cuda` without a GPU is an error the user can fix."""
    from gpt2core.errors import WikiGPTError

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise WikiGPTError("train.device is 'cuda' but no CUDA device is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def prepare_device(device: torch.device, precision: str) -> None:
    """What the device needs before a run: CPU flushes denormals; bf16 must be supported by the GPU."""
    from gpt2core.errors import WikiGPTError

    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal grads from a peaked softmax made CPU steps ~6x slower
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise WikiGPTError("config: train.precision bf16 is not supported by this GPU; use fp16")


def die_with_parent() -> None:
    """Under torchrun, SIGKILL this worker when the launcher dies.

    torchrun starts workers in their own session, so `kill -9` of torchrun (or of the workflow's job) would
    leave a worker training on, racing the rerun that resumes from the same checkpoint directory.
    """
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def init_distributed(requested_device: str) -> DistEnv:
    """Read torchrun's environment; join a process group only when WORLD_SIZE > 1."""
    die_with_parent()
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, local_rank, world, device)


def apply_parallelism(model: nn.Module, plan: ParallelPlan, device: torch.device
                      ) -> tuple[nn.Module, DeviceMesh | None]:
    """Tensor/data parallelism from gpt2core.parallel on the (dp, tp) mesh of `plan` (gpt2core.config's,
    checked there against torchrun's world size); one process: the model unchanged and no mesh, so the plain
    trainer runs exactly the code it ran before."""
    from gpt2core.parallel import parallelize

    if plan.world == 1:
        return model, None
    return parallelize(model, plan, device.type)


def all_reduce_sum(t: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Sum over the ranks of `group` (all by default; identity in a single process): loss averages."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any rank: every rank must take the same fp16 skip decision."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
