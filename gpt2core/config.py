"""The run's configuration after schema validation: its parallel layout and every rule between its keys.

Free of torch, so the workflow calls it when it builds the DAG (rules/common.smk: `check_config`, and
`resolve_layout` for the process counts) without slowing every snakemake invocation by seconds, and
`snakemake -n` already stops in one line naming the key. The trainer calls `check_model` and
`check_training` again with what it got (torchrun's world size, the tokenizer's vocabulary, the device), so
a direct launch gets the same lines. The schema (workflow/schemas/config.schema.yaml) checks each key alone
and fills in its defaults; stages keep their own data checks (evaluation's windows, generation's prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from gpt2core.data.download import is_remote, local_path
from gpt2core.errors import WikiGPTError
from gpt2core.vocab import padded_vocab_size

FLOAT8_RECIPES = ("rowwise", "tensorwise")
# torch.compile modes that put CUDA graphs of their own inside the step (a whole-step capture cannot nest them)
_GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")


def check_config(config: dict) -> None:
    """Every rule between keys that needs no data, in one place: the workflow's stop before any job."""
    if sum(config["data"]["split"]) <= 0:  # the schema checks three weights >= 0; tokenize checks this too
        raise WikiGPTError(f"config: data.split {config['data']['split']}: the train/valid/test weights add up to 0")
    check_model(config["model"])
    check_evaluation(config["model"], config["eval"]["wiki103"])
    check_generation(config["generate"])
    check_training(config["model"], resolve_layout(config["train"]))


def check_training(model: dict, train: dict, vocab_size: int | None = None,
                   device_type: str | None = None) -> ParallelPlan:
    """The layout and the speed levers of `train` (its layout resolved); the trainer adds the tokenizer's
    vocabulary and the device it got, which the DAG build does not know yet."""
    plan = check_parallel_config(model, train, vocab_size)
    check_seq_len(int(model["seq_len"]), plan)
    check_levers(train, device_type)
    return plan


def check_model(model: dict) -> None:
    """The model's shape: positions for every token of a window, whole heads."""
    if model["seq_len"] > model["n_positions"]:
        raise WikiGPTError(f"config: model.seq_len {model['seq_len']} exceeds model.n_positions "
                           f"{model['n_positions']}")
    if model["n_embd"] % model["n_head"]:
        raise WikiGPTError(f"config: model.n_embd {model['n_embd']} is not divisible by model.n_head "
                           f"{model['n_head']}")


def check_evaluation(model: dict, wiki103: dict) -> None:
    """WikiText-103 windows must fit the model's positions and hold their overlap (0 = n_positions)."""
    if not wiki103.get("source"):
        return
    seq_len = wiki103["seq_len"] or model["n_positions"]
    if wiki103["seq_len"] > model["n_positions"]:
        raise WikiGPTError(f"config: eval.wiki103.seq_len {wiki103['seq_len']} exceeds model.n_positions "
                           f"{model['n_positions']}")
    if wiki103["overlap"] > seq_len:
        raise WikiGPTError(f"config: eval.wiki103.overlap {wiki103['overlap']} exceeds eval.wiki103.seq_len "
                           f"{seq_len}{' (0: model.n_positions)' if not wiki103['seq_len'] else ''}")


def check_generation(generate: dict) -> None:
    if not generate["prompts"] and not generate["prompts_file"]:
        raise WikiGPTError("config: generate.prompts is empty and generate.prompts_file names no file: "
                           "give rule generate a prompt")


# ---- the parallel layout ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParallelPlan:
    """Sizes of the 2-D mesh and the options a run was configured with."""

    dp: int = 1
    tp: int = 1
    sequence_parallel: bool = False

    @property
    def world(self) -> int:
        return self.dp * self.tp


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


# ---- the GPU speed levers (docs/gpu-levers.md): each off when its key is absent -------------------------
def check_levers(train_cfg: dict, device_type: str | None = None) -> None:
    """Refuse, in one line naming the key, a lever combination that cannot work. `device_type`: the device the
    run got ("cuda", "cpu"), or None at DAG build, where train.device may still say "auto"."""
    tc = train_cfg
    device = device_type or (tc.get("device") if tc.get("device") in ("cpu", "cuda") else None)
    one_process = int(tc.get("tp", 1)) == 1 and int(tc.get("dp", 1)) == 1
    precision = tc.get("precision")
    if tc.get("liger_loss"):
        if tc.get("loss_chunk"):
            raise WikiGPTError("config: train.liger_loss and train.loss_chunk are two fused output layers + losses; "
                               "set one of them")
        if int(tc.get("tp", 1)) > 1:
            raise WikiGPTError("config: train.liger_loss needs train.tp 1 (the vocabulary-parallel loss already "
                               "never gathers the logits)")
        if precision == "fp16":
            raise WikiGPTError("config: train.liger_loss works with precision bf16 or fp32, not fp16 (its gradients "
                               "are made in the forward, before the loss scale could apply)")
        _needs_cuda("liger_loss", "Liger-Kernel's Triton kernels", device)
    if tc.get("fused_add_norm"):
        if int(tc.get("tp", 1)) > 1:
            raise WikiGPTError("config: train.fused_add_norm needs train.tp 1 (the tensor-parallel blocks keep "
                               "their own residual adds)")
        if tc.get("activation_checkpointing"):
            raise WikiGPTError("config: train.fused_add_norm fuses across block boundaries, which activation "
                               "checkpointing recomputes one block at a time; set one of them")
    if tc.get("cuda_graph"):
        if not one_process:
            raise WikiGPTError("config: train.cuda_graph captures one process's whole step; it needs train.tp 1 "
                               "and train.dp 1")
        if precision == "fp16":
            raise WikiGPTError("config: train.cuda_graph needs precision bf16 or fp32 (fp16's loss scale is "
                               "decided on the host between steps)")
        if tc.get("compile") in _GRAPHING_COMPILE_MODES:
            raise WikiGPTError(f"config: train.cuda_graph captures the whole step, and train.compile "
                               f"{tc.get('compile')} makes CUDA graphs of its own inside it; use compile true or "
                               "max-autotune-no-cudagraphs")
        if tc.get("liger_loss"):
            raise WikiGPTError("config: train.cuda_graph cannot capture train.liger_loss (it reads a count back "
                               "to the host every call); set one of them")
        _needs_cuda("cuda_graph", "CUDA graphs", device)
    recipe = tc.get("float8")
    if recipe:
        if recipe not in FLOAT8_RECIPES:
            raise WikiGPTError(f"config: train.float8 is false or one of {', '.join(FLOAT8_RECIPES)}, not {recipe!r}")
        if precision != "bf16":
            raise WikiGPTError(f"config: train.float8 runs the block linears in float8 around a bf16 step; it needs "
                               f"precision bf16, not {precision}")
        if int(tc.get("tp", 1)) > 1:
            raise WikiGPTError("config: train.float8 needs train.tp 1 (torchao's float8 tensor parallelism is not "
                               "wired in)")
        _needs_cuda("float8", "float8 matmuls (torchao, an sm89+ GPU)", device)


def _needs_cuda(key: str, what: str, device: str | None) -> None:
    if device is not None and device != "cuda":
        raise WikiGPTError(f"config: train.{key} needs a CUDA device ({what}); this run is on {device}")


def check_local_source(source: dict, what: str, downloaded: str | Path) -> None:
    """A local source that is not there, and was never downloaded, stops the run before any job: the
    download job would only fail on it later. A copy made before the file went away keeps its results."""
    url = source["url"]
    if is_remote(url) or urlparse(url).scheme not in ("", "file"):  # the download names a bad scheme
        return
    if local_path(url).exists() or Path(downloaded).exists():
        return
    raise WikiGPTError(f"config: {what}: {url}: no such file")
