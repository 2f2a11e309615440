"""Tensor and data parallelism for gpt2core.model.GPT on PyTorch's own engine (DTensor), applied from
outside the model (torchtitan's pattern): the model file knows nothing about it.

Layout on a 2-D DeviceMesh ("dp", "tp"):
- attention c_attn and mlp.c_fc: ColwiseParallel (output dim sharded); c_proj: RowwiseParallel.
  q, k, v are stacked in c_attn, so before sharding its rows are regrouped so that tp rank r holds
  [Q_r; K_r; V_r] (Megatron's layout, SPEC merge table); gpt2core.export.merge undoes it.
- wte: vocabulary-parallel embedding (RowwiseParallel on nn.Embedding shards rows = vocabulary);
  lm_head: ColwiseParallel with its output left sharded on the vocabulary for `loss_parallel`.
  Both weights are row-sharded [vocab, hidden] DTensors: they are re-tied after sharding.
- sequence parallelism (optional): LayerNorms and the residual stream sharded on the sequence dim.
- parameters left unsharded (LayerNorms, positions, row-parallel biases) become Replicate DTensors, so
  the optimizer's foreach/fused kernels and DCP see one kind of parameter.
- data parallelism: FSDP2 (`fully_shard`) over the dp dimension (composes with the tp DTensors;
  gradients reduce-scattered and averaged over dp ranks only).

Pitfalls handled here (torch 2.13 CPU): the tie coming apart (re-tied). The gradients of the sharded model
(a DTensor/plain mix, Partial gradients under sequence parallelism) are gpt2core.training.grads's: its mesh
norm reduces each gradient over the mesh dims it is sharded on, identical on all ranks, so every rank agrees
on an fp16 overflow (enforced by gpt2core.training.distributed.any_rank).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.experimental import implicit_replication
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)

from gpt2core.config import ParallelPlan
from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig
from gpt2core.vocab import padded_vocab_size

MESH_DIMS = ("dp", "tp")


def init_model(cfg: GPTConfig, seed: int) -> GPT:
    """The model for `cfg` initialised as the tp=1 model would be, its extra padded vocabulary rows zero:
    the padding grows with tp (gpt2core.vocab), and without this every tp would draw other random weights,
    so tp=2 and tp=1 runs could not start from the same init. Padded rows never receive gradient."""
    cfg1 = replace(cfg, padded_vocab_size=padded_vocab_size(cfg.vocab_size, cfg.vocab_multiple, 1))
    torch.manual_seed(seed)
    model = GPT(cfg1)
    if cfg1.padded_vocab_size == cfg.padded_vocab_size:
        return model
    with torch.device("meta"):
        wide = GPT(cfg)
    state = model.state_dict()
    extra = cfg.padded_vocab_size - cfg1.padded_vocab_size
    state["wte.weight"] = torch.cat([state["wte.weight"], state["wte.weight"].new_zeros(extra, cfg.n_embd)])
    state.pop("lm_head.weight")
    wide.load_state_dict(state, strict=False, assign=True)
    wide.lm_head.weight = wide.wte.weight
    return wide


# ---- the mesh --------------------------------------------------------------------------------------
def build_mesh(plan: ParallelPlan, device_type: str) -> DeviceMesh:
    """The ("dp", "tp") mesh over the default process group; tp innermost (ranks of a tp group adjacent,
    so on GPUs a tp group stays inside one node's NVLink domain). The plan's world is torchrun's
    (gpt2core.config.ParallelPlan.from_train checks it)."""
    if not dist.is_initialized():
        raise WikiGPTError("parallel training needs torchrun (no process group is initialised)")
    return init_device_mesh(device_type, (plan.dp, plan.tp), mesh_dim_names=MESH_DIMS)


def dp_rank_and_size(mesh: DeviceMesh | None) -> tuple[int, int]:
    """Which data shard this rank reads: all ranks of a tp group must read the same batch."""
    if mesh is None:
        return 0, 1
    return mesh["dp"].get_local_rank(), mesh["dp"].size()


# ---- q, k, v regrouping --------------------------------------------------------------------------------
def qkv_to_tp_layout(t: torch.Tensor, tp: int) -> torch.Tensor:
    """[Q; K; V] (rows) -> [Q_0; K_0; V_0; Q_1; ...]: after a contiguous row split, rank r holds its heads."""
    rows = t.shape[0] // 3
    return t.reshape(3, tp, rows // tp, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def qkv_from_tp_layout(t: torch.Tensor, tp: int) -> torch.Tensor:
    """Inverse of qkv_to_tp_layout (the merge's regrouping)."""
    rows = t.shape[0] // 3
    return t.reshape(tp, 3, rows // tp, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


@torch.no_grad()
def _regroup_qkv_(model: nn.Module, tp: int) -> None:
    for block in model.h:
        for p in (block.attn.c_attn.weight, block.attn.c_attn.bias):
            p.copy_(qkv_to_tp_layout(p.detach().clone(), tp))


# ---- tensor parallelism ----------------------------------------------------------------------------
def _replicate_rest(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Every parameter not sharded yet (LayerNorms, positions) becomes a Replicate DTensor: the optimizer's
    foreach kernels and DCP refuse a mix of DTensor and plain parameters."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if not isinstance(p, DTensor):
                dt = DTensor.from_local(p.detach(), tp_mesh, [Replicate()], run_check=False)
                module.register_parameter(name, nn.Parameter(dt, requires_grad=p.requires_grad))


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh, sequence_parallel: bool = False) -> nn.Module:
    """Shard `model` (a gpt2core GPT, identical on every rank) in place over `tp_mesh`; returns it."""
    tp = tp_mesh.size()
    cfg = model.config
    if cfg.n_head % tp or cfg.n_embd % tp or cfg.padded_vocab_size % tp:
        raise WikiGPTError(f"model with {cfg.n_head} heads, hidden {cfg.n_embd}, padded vocabulary "
                           f"{cfg.padded_vocab_size} cannot be split {tp} ways")
    _regroup_qkv_(model, tp)
    seq = Shard(1) if sequence_parallel else Replicate()
    parallelize_module(model, tp_mesh, {
        "wte": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq, use_local_output=False),
        "lm_head": ColwiseParallel(input_layouts=seq, output_layouts=Shard(-1), use_local_output=False),
        **({"ln_f": SequenceParallel()} if sequence_parallel else {}),
    })
    for block in model.h:
        plan = {
            "attn.c_attn": ColwiseParallel(),
            "attn.c_proj": RowwiseParallel(output_layouts=seq, use_local_output=False),
            "mlp.c_fc": ColwiseParallel(),
            "mlp.c_proj": RowwiseParallel(output_layouts=seq, use_local_output=False),
        }
        if sequence_parallel:
            plan.update({
                "ln_1": SequenceParallel(), "ln_2": SequenceParallel(),
                "attn": PrepareModuleInput(input_layouts=(Shard(1), None), desired_input_layouts=(Replicate(), None),
                                           use_local_output=True),
                "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                          use_local_output=True),
            })
        parallelize_module(block, tp_mesh, plan)
    model.lm_head.weight = model.wte.weight  # both Shard(0) over [vocab, hidden]: the same DTensor again
    _replicate_rest(model, tp_mesh)
    model.tp_size = tp
    return model


@contextlib.contextmanager
def tp_context(enabled: bool) -> Iterator[None]:
    """Around forward, loss and backward of a tensor-parallel model: `loss_parallel` computes the
    cross-entropy on vocabulary-sharded logits without gathering them, and implicit replication lets
    plain tensors (positions, the padded-id mask, the loss mask) meet DTensors as replicated values."""
    if not enabled:
        yield
        return
    with loss_parallel(), implicit_replication():
        yield


def local_loss(loss: torch.Tensor) -> torch.Tensor:
    """A replicated DTensor scalar -> the plain tensor (for logging and accumulation)."""
    return loss.full_tensor() if isinstance(loss, DTensor) else loss


def full_logits(logits: torch.Tensor) -> torch.Tensor:
    """Vocabulary-sharded logits -> the full plain tensor (evaluation, tests)."""
    return logits.full_tensor() if isinstance(logits, DTensor) else logits


# ---- data parallelism ------------------------------------------------------------------------------
def apply_data_parallel(model: nn.Module, dp_mesh: DeviceMesh) -> nn.Module:
    """FSDP2 (`fully_shard`) over the dp dimension, one unit per block plus the root: parameters (already
    DTensors on the tp dim, if any) are sharded over dp too, gradients reduce-scattered and averaged."""
    from torch.distributed.fsdp import fully_shard

    for block in model.h:
        fully_shard(block, mesh=dp_mesh)
    fully_shard(model, mesh=dp_mesh)
    return model


def parallelize(model: nn.Module, plan: ParallelPlan, device_type: str) -> tuple[nn.Module, DeviceMesh]:
    """Build the mesh and apply tp then dp; returns (the module to call, the mesh)."""
    mesh = build_mesh(plan, device_type)
    if plan.tp > 1:
        apply_tensor_parallel(model, mesh["tp"], plan.sequence_parallel)
    wrapped = apply_data_parallel(model, mesh["dp"]) if plan.dp > 1 else model
    return wrapped, mesh
