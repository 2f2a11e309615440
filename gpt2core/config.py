"""The run's configuration, typed once from the schema-validated dict, and every rule between its keys.

Free of torch, so the workflow calls it when it builds the DAG (rules/common.smk: `check_config`, and
`resolve_layout` for the process counts) without slowing every workflow invocation by seconds, and
a dry run already stops in one line naming the key. The trainer builds the same typed configs from
its arguments and calls `check_run` again with what only it knows (torchrun's world size, the tokenizer's
vocabulary, the device), so a direct launch gets the same lines. The schema
(workflow/schemas/config.schema.yaml) checks each key alone and fills in its defaults, so no default is
restated here: a key without a schema default is None when absent, which means off (or, for the layout,
"follows from the other keys", ParallelPlan.from_train).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from gpt2core.errors import WikiGPTError
from gpt2core.vocab import padded_vocab_size

FLOAT8_RECIPES = ("rowwise", "tensorwise")
# torch.compile modes that put CUDA graphs of their own inside the step (a whole-step capture cannot nest them)
_GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")


# ---- the typed sections ------------------------------------------------------------------------------
class _Section:
    """A config section as a frozen dataclass: built from the validated dict, written back as one."""

    _NAME = ""

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]):  # noqa: ANN206 (the subclass)
        """Every key the schema defaults must be there (the workflow's validation filled them in; a direct
        launch must pass them all); an unknown key is refused, as the schema refuses it."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise WikiGPTError(f"config: unknown key {', '.join(map(repr, unknown))} in {cls._NAME}")
        missing = [f.name for f in fields(cls) if f.name not in section and f.default is MISSING]
        if missing:
            raise WikiGPTError(f"config: {cls._NAME}.{missing[0]} is missing (the workflow's schema fills in "
                               "every default; a direct launch must give every key)")
        return cls(**dict(section))

    def to_dict(self) -> dict[str, Any]:
        """The section as given: keys without a schema default only when set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# A field without a default is one the schema gives a default to: from_dict needs it, nothing restates it here.
@dataclass(frozen=True, kw_only=True)
class ModelConfig(_Section):
    """`model`: the GPT-2 shape and its training window."""

    _NAME = "model"
    n_layer: int
    n_head: int
    n_embd: int
    seq_len: int
    n_positions: int
    dropout: float
    vocab_multiple: int


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_Section):
    """`train`: the launch layout, precision, optimizer, schedule, checkpoints and the speed levers."""

    _NAME = "train"
    nnodes: int
    tp: int
    sequence_parallel: bool
    device: str
    precision: str
    micro_batch: int
    grad_accum: int
    iters: int
    lr: float
    min_lr: float
    warmup: float
    decay: str
    weight_decay: float
    grad_clip: float
    beta1: float
    beta2: float
    eps: float
    seed: int
    eval_interval: int
    eval_iters: int
    save_interval: int
    keep_last: int
    log_interval: int
    activation_checkpointing: bool
    compile: bool | str
    mask_eod_loss: bool
    init_loss_scale: float
    loss_scale_window: int
    max_skipped_steps: int
    threads: int
    rdzv_endpoint: str
    # no schema default: None when absent (the layout then follows from the other keys; a lever is off)
    dp: int | None = None
    nproc_per_node: int | None = None
    loss_chunk: int | None = None
    half_residual: bool | None = None
    liger_loss: bool | None = None
    fused_add_norm: bool | None = None
    cuda_graph: bool | None = None
    float8: bool | str | None = None

    def with_layout(self, plan: ParallelPlan) -> TrainConfig:
        """This config with the layout `plan` resolved (dp and nproc_per_node filled in)."""
        return replace(self, dp=plan.dp, nproc_per_node=plan.nproc_per_node)


# ---- the parallel layout -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ParallelPlan:
    """The degrees of the 2-D (dp, tp) mesh and how its processes spread over nodes: the one owner of the
    layout's numbers and of their check against each other and against torchrun's world size."""

    dp: int = 1
    tp: int = 1
    sequence_parallel: bool = False
    nnodes: int = 1

    @property
    def world(self) -> int:
        return self.dp * self.tp

    @property
    def nproc_per_node(self) -> int:
        return self.world // self.nnodes

    @classmethod
    def from_train(cls, train: TrainConfig, world: int | None = None) -> ParallelPlan:
        """The layout as torchrun and torchtitan users expect it: the processes a node follow from tp x dp
        (over nnodes), and dp from the process count over tp when only that (or, in the trainer, torchrun's
        `world`) is given. Numbers that cannot fit, keys that contradict each other, and a torchrun that
        started another number of processes are one line each."""
        tp, nnodes, dp, nproc = train.tp, train.nnodes, train.dp, train.nproc_per_node
        if dp is None:
            if nproc is not None:
                procs, where = nproc * nnodes, "train.nproc_per_node x train.nnodes"
            else:
                procs, where = (world, "torchrun's world size") if world is not None else (tp, "")
            if procs % tp:
                raise WikiGPTError(f"config: {where} = {procs} process(es), not a multiple of train.tp {tp}")
            dp = procs // tp
        if nproc is None:
            if (tp * dp) % nnodes:
                raise WikiGPTError(f"config: train.tp x train.dp = {tp} x {dp} = {tp * dp} processes do not split "
                                   f"evenly over train.nnodes {nnodes}; set train.nproc_per_node")
            nproc = tp * dp // nnodes
        if nproc * nnodes != tp * dp:
            raise WikiGPTError(f"config: train.nproc_per_node x train.nnodes = {nproc} x {nnodes} = {nproc * nnodes} "
                               f"processes, but train.tp x train.dp = {tp} x {dp} = {tp * dp}")
        if world is not None and world != tp * dp:
            raise WikiGPTError(f"config: torchrun started {world} processes, train.tp x train.dp = "
                               f"{tp} x {dp} = {tp * dp}")
        if train.sequence_parallel and tp == 1:
            raise WikiGPTError("config: train.sequence_parallel needs train.tp > 1")
        return cls(dp=dp, tp=tp, sequence_parallel=train.sequence_parallel, nnodes=nnodes)


def resolve_layout(train: Mapping[str, Any]) -> dict[str, Any]:
    """config['train'] with dp and nproc_per_node filled in (rules/common.smk: `train: {tp: 2}` alone means
    two processes, and the rule's params carry the numbers torchrun gets)."""
    typed = TrainConfig.from_dict(train)
    return typed.with_layout(ParallelPlan.from_train(typed)).to_dict()


# ---- the rules between keys --------------------------------------------------------------------------
def check_config(config: Mapping[str, Any]) -> None:
    """Every rule between keys that needs no data, in one place: the workflow's stop before any job."""
    if sum(config["data"]["split"]) <= 0:  # the schema checks three weights >= 0; tokenize checks this too
        raise WikiGPTError(f"config: data.split {config['data']['split']}: the train/valid/test weights add up to 0")
    check_corpus_names(config["corpora"])
    check_tokenizer_files(config["tokenizer"])
    model = ModelConfig.from_dict(config["model"])
    check_run(model, TrainConfig.from_dict(config["train"]))
    check_evaluation(model, config["eval"]["wiki103"])
    check_generation(config["generate"])


def check_corpus_names(corpora: list[Mapping[str, Any]]) -> None:
    """A corpus name names its folders and its share of the blend: two corpora cannot share one."""
    names = [c["name"] for c in corpora]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise WikiGPTError(f"config: two corpora are named {duplicate!r} (names must be unique)")


def check_tokenizer_files(tokenizer: Mapping[str, Any]) -> None:
    """OpenAI's GPT-2 BPE comes as two files; both must be named."""
    if tokenizer["kind"] == "gpt2":
        for key in ("encoder", "vocab"):
            if key not in tokenizer:
                raise WikiGPTError(f"config: tokenizer.kind gpt2 needs tokenizer.{key}.url")


def check_run(model: ModelConfig, train: TrainConfig, world: int | None = None, vocab_size: int | None = None,
              device_type: str | None = None) -> ParallelPlan:
    """The model's shape, the layout and the speed levers, together: the trainer adds torchrun's `world`,
    the tokenizer's vocabulary and the device it got, which the DAG build does not know yet."""
    check_model(model)
    plan = check_parallel_config(model, train, world, vocab_size)
    check_levers(train, device_type, plan)
    return plan


def check_model(model: ModelConfig) -> None:
    """The model's shape: positions for every token of a window, whole heads."""
    if model.seq_len > model.n_positions:
        raise WikiGPTError(f"config: model.seq_len {model.seq_len} exceeds model.n_positions {model.n_positions}")
    if model.n_embd % model.n_head:
        raise WikiGPTError(f"config: model.n_embd {model.n_embd} is not divisible by model.n_head {model.n_head}")


def check_evaluation(model: ModelConfig, wiki103: Mapping[str, Any]) -> None:
    """WikiText-103 windows must fit the model's positions and hold their overlap (0 = n_positions)."""
    if not wiki103.get("source"):
        return
    seq_len = wiki103["seq_len"] or model.n_positions
    if wiki103["seq_len"] > model.n_positions:
        raise WikiGPTError(f"config: eval.wiki103.seq_len {wiki103['seq_len']} exceeds model.n_positions "
                           f"{model.n_positions}")
    if wiki103["overlap"] > seq_len:
        raise WikiGPTError(f"config: eval.wiki103.overlap {wiki103['overlap']} exceeds eval.wiki103.seq_len "
                           f"{seq_len}{' (0: model.n_positions)' if not wiki103['seq_len'] else ''}")


def check_generation(generate: Mapping[str, Any]) -> None:
    if not generate["prompts"] and not generate["prompts_file"]:
        raise WikiGPTError("config: generate.prompts is empty and generate.prompts_file names no file: "
                           "give rule generate a prompt")


def check_token_dtype(vocab_size: int, what: str, dtype: str) -> None:
    """Token ids must fit the shards' integers (rule tokenize knows the vocabulary before any job)."""
    if dtype == "uint16" and vocab_size > 65536:
        raise WikiGPTError(f"config: {what} {vocab_size} does not fit data.dtype uint16 (at most 65536 tokens); "
                           "use data.dtype uint32")


def check_parallel_config(model: ModelConfig, train: TrainConfig, world: int | None = None,
                          vocab_size: int | None = None) -> ParallelPlan:
    """Refuse, in one line naming the key, a layout torchrun would only fail on later (or train wrongly)."""
    plan = ParallelPlan.from_train(train, world)
    tp = plan.tp
    if model.n_head % tp:
        raise WikiGPTError(f"config: model.n_head {model.n_head} is not divisible by train.tp {tp}")
    if model.n_embd % tp:
        raise WikiGPTError(f"config: model.n_embd {model.n_embd} is not divisible by train.tp {tp}")
    if vocab_size is not None:
        padded = padded_vocab_size(vocab_size, model.vocab_multiple, tp)
        if padded % tp:
            raise WikiGPTError(f"config: padded vocabulary {padded} (model.vocab_multiple "
                               f"{model.vocab_multiple}) is not divisible by train.tp {tp}")
    if train.loss_chunk and tp > 1:  # the vocabulary-parallel loss already never gathers the logits
        raise WikiGPTError(f"config: train.loss_chunk needs train.tp 1 (got {tp}); set it to 0")
    if train.loss_chunk and train.precision == "fp16":
        raise WikiGPTError("config: train.loss_chunk works with precision bf16 or fp32, not fp16 (its gradients "
                           "are made in the forward, before the loss scale could apply); set it to 0")
    if train.half_residual and train.precision not in ("fp16", "bf16"):
        raise WikiGPTError(f"config: train.half_residual keeps the residual stream in the 16-bit autocast dtype; "
                           f"it needs precision fp16 or bf16, not {train.precision}")
    check_seq_len(model.seq_len, plan)
    return plan


def check_seq_len(seq_len: int, plan: ParallelPlan) -> None:
    """Sequence parallelism shards the sequence dim: it must split evenly."""
    if plan.sequence_parallel and seq_len % plan.tp:
        raise WikiGPTError(f"config: model.seq_len {seq_len} is not divisible by train.tp {plan.tp} "
                           "(needed by train.sequence_parallel)")


# ---- the GPU speed levers (docs/gpu-levers.md): each off when its key is absent -------------------------
def check_levers(train: TrainConfig, device_type: str | None = None, plan: ParallelPlan | None = None) -> None:
    """Refuse, in one line naming the key, a lever combination that cannot work. `device_type`: the device the
    run got ("cuda", "cpu"), or None at DAG build, where train.device may still say "auto". `plan`: the run's
    layout when the caller has it (check_run: with torchrun's world size), else the one `train` gives."""
    tc = train
    device = device_type or (tc.device if tc.device in ("cpu", "cuda") else None)
    one_process = (plan or ParallelPlan.from_train(tc)).world == 1
    precision = tc.precision
    if tc.liger_loss:
        if tc.loss_chunk:
            raise WikiGPTError("config: train.liger_loss and train.loss_chunk are two fused output layers + losses; "
                               "set one of them")
        if tc.tp > 1:
            raise WikiGPTError("config: train.liger_loss needs train.tp 1 (the vocabulary-parallel loss already "
                               "never gathers the logits)")
        if precision == "fp16":
            raise WikiGPTError("config: train.liger_loss works with precision bf16 or fp32, not fp16 (its gradients "
                               "are made in the forward, before the loss scale could apply)")
        _needs_cuda("liger_loss", "Liger-Kernel's Triton kernels", device)
    if tc.fused_add_norm:
        if tc.tp > 1:
            raise WikiGPTError("config: train.fused_add_norm needs train.tp 1 (the tensor-parallel blocks keep "
                               "their own residual adds)")
        if tc.activation_checkpointing:
            raise WikiGPTError("config: train.fused_add_norm fuses across block boundaries, which activation "
                               "checkpointing recomputes one block at a time; set one of them")
    if tc.cuda_graph:
        if not one_process:
            raise WikiGPTError("config: train.cuda_graph captures one process's whole step; it needs train.tp 1 "
                               "and train.dp 1")
        if precision == "fp16":
            raise WikiGPTError("config: train.cuda_graph needs precision bf16 or fp32 (fp16's loss scale is "
                               "decided on the host between steps)")
        if tc.compile in _GRAPHING_COMPILE_MODES:
            raise WikiGPTError(f"config: train.cuda_graph captures the whole step, and train.compile "
                               f"{tc.compile} makes CUDA graphs of its own inside it; use compile true or "
                               "max-autotune-no-cudagraphs")
        if tc.liger_loss:
            raise WikiGPTError("config: train.cuda_graph cannot capture train.liger_loss (it reads a count back "
                               "to the host every call); set one of them")
        _needs_cuda("cuda_graph", "CUDA graphs", device)
    recipe = tc.float8
    if recipe:
        if recipe not in FLOAT8_RECIPES:
            raise WikiGPTError(f"config: train.float8 is false or one of {', '.join(FLOAT8_RECIPES)}, not {recipe!r}")
        if precision != "bf16":
            raise WikiGPTError(f"config: train.float8 runs the block linears in float8 around a bf16 step; it needs "
                               f"precision bf16, not {precision}")
        if tc.tp > 1:
            raise WikiGPTError("config: train.float8 needs train.tp 1 (torchao's float8 tensor parallelism is not "
                               "wired in)")
        _needs_cuda("float8", "float8 matmuls (torchao, an sm89+ GPU)", device)


def _needs_cuda(key: str, what: str, device: str | None) -> None:
    if device is not None and device != "cuda":
        raise WikiGPTError(f"config: train.{key} needs a CUDA device ({what}); this run is on {device}")
