"""The tensor/data-parallel layout of a run and its checks, without torch: the workflow imports this at
parse time (rules/train.smk) to refuse a bad layout before anything is launched, and importing torch there
would slow every snakemake invocation by seconds."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2core.errors import WikiGPTError
from gpt2core.vocab import padded_vocab_size


@dataclass(frozen=True)
class ParallelPlan:
    """Sizes of the 2-D mesh and the options a run was configured with."""

    dp: int = 1
    tp: int = 1
    sequence_parallel: bool = False

    @property
    def world(self) -> int:
        return self.dp * self.tp


# ---- configuration checks (before launch) --------------------------------------------------------------
def resolve_layout(train_cfg: dict, world: int | None = None) -> dict:
    """`train` with `dp` and `nproc_per_node` filled in the way torchrun and torchtitan users expect: the
    processes a node follow from tp x dp (over nnodes), and dp from the process count over tp when only that
    (or, in the trainer, torchrun's `world`) is given; only numbers that cannot fit are an error here, and a
    contradiction of keys given both is check_parallel_config's."""
    cfg = dict(train_cfg)
    tp, nnodes = int(cfg.get("tp", 1)), int(cfg.get("nnodes", 1))
    if cfg.get("dp") is None:
        if cfg.get("nproc_per_node") is not None:
            world, where = int(cfg["nproc_per_node"]) * nnodes, "train.nproc_per_node x train.nnodes"
        else:
            where = "torchrun's world size"
        if world is None:
            cfg["dp"] = 1
        elif world % tp:
            raise WikiGPTError(f"config: {where} = {world} process(es), not a multiple of train.tp {tp}")
        else:
            cfg["dp"] = world // tp
    if cfg.get("nproc_per_node") is None:
        procs = tp * int(cfg["dp"])
        if procs % nnodes:
            raise WikiGPTError(f"config: train.tp x train.dp = {tp} x {cfg['dp']} = {procs} processes do not split "
                               f"evenly over train.nnodes {nnodes}; set train.nproc_per_node")
        cfg["nproc_per_node"] = procs // nnodes
    return cfg


def check_parallel_config(model_cfg: dict, train_cfg: dict, vocab_size: int | None = None) -> ParallelPlan:
    """Refuse, in one line naming the key, a layout torchrun would only fail on later (or train wrongly)."""
    tp, dp = int(train_cfg.get("tp", 1)), int(train_cfg.get("dp", 1))
    nproc, nnodes = int(train_cfg.get("nproc_per_node", 1)), int(train_cfg.get("nnodes", 1))
    if nproc * nnodes != tp * dp:
        raise WikiGPTError(f"config: train.nproc_per_node x train.nnodes = {nproc} x {nnodes} = {nproc * nnodes} "
                           f"processes, but train.tp x train.dp = {tp} x {dp} = {tp * dp}")
    if model_cfg["n_head"] % tp:
        raise WikiGPTError(f"config: model.n_head {model_cfg['n_head']} is not divisible by train.tp {tp}")
    if model_cfg["n_embd"] % tp:
        raise WikiGPTError(f"config: model.n_embd {model_cfg['n_embd']} is not divisible by train.tp {tp}")
    if vocab_size is not None:
        padded = padded_vocab_size(vocab_size, int(model_cfg.get("vocab_multiple", 128)), tp)
        if padded % tp:
            raise WikiGPTError(f"config: padded vocabulary {padded} (model.vocab_multiple "
                               f"{model_cfg.get('vocab_multiple')}) is not divisible by train.tp {tp}")
    if train_cfg.get("loss_chunk") and tp > 1:  # the vocabulary-parallel loss already never gathers the logits
        raise WikiGPTError(f"config: train.loss_chunk needs train.tp 1 (got {tp}); set it to 0")
    if train_cfg.get("loss_chunk") and train_cfg.get("precision") == "fp16":
        raise WikiGPTError("config: train.loss_chunk works with precision bf16 or fp32, not fp16 (its gradients "
                           "are made in the forward, before the loss scale could apply); set it to 0")
    if train_cfg.get("half_residual") and train_cfg.get("precision") not in ("fp16", "bf16"):
        raise WikiGPTError(f"config: train.half_residual keeps the residual stream in the 16-bit autocast dtype; "
                           f"it needs precision fp16 or bf16, not {train_cfg.get('precision')}")
    if train_cfg.get("sequence_parallel") and tp == 1:
        raise WikiGPTError("config: train.sequence_parallel needs train.tp > 1")
    return ParallelPlan(dp=dp, tp=tp, sequence_parallel=bool(train_cfg.get("sequence_parallel", False)))


def check_seq_len(seq_len: int, plan: ParallelPlan) -> None:
    """Sequence parallelism shards the sequence dim: it must split evenly."""
    if plan.sequence_parallel and seq_len % plan.tp:
        raise WikiGPTError(f"config: model.seq_len {seq_len} is not divisible by train.tp {plan.tp} "
                           "(needed by train.sequence_parallel)")
