"""Checks of the GPU speed levers' train keys (`liger_loss`, `fused_add_norm`, `cuda_graph`, `float8`), without
torch: rules/train.smk runs them at DAG build so that a combination that cannot work is one line before any
job, and the trainer runs them again with the device it got (docs/gpu-levers.md says what each lever does).

Every lever is off when its key is absent: none has a schema default, so configs without them keep their params.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gpt2core.errors import WikiGPTError

# optional packages: (import name, pip name, the pyproject extra that installs it)
LIGER = ("liger_kernel", "liger-kernel", "liger")
TORCHAO = ("torchao", "torchao", "float8")
FLOAT8_RECIPES = ("rowwise", "tensorwise")
# torch.compile modes that put CUDA graphs of their own inside the step (a whole-step capture cannot nest them)
_GRAPHING_COMPILE_MODES = ("reduce-overhead", "max-autotune")


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


def import_optional(key: str, package: tuple[str, str, str], module: str | None = None) -> ModuleType:
    """Import a lever's optional package (or one of its modules) only when the lever is on; a one-line error
    naming the key when it is not installed."""
    name, pip_name, extra = package
    try:
        return importlib.import_module(module or name)
    except ImportError as exc:
        if exc.name is not None and exc.name != name and not exc.name.startswith(name + "."):
            raise WikiGPTError(f"config: train.{key}: {pip_name} is installed but does not import ({exc})") from None
        raise WikiGPTError(f"config: train.{key} needs the {pip_name} package: pip install 'wikigpt[{extra}]' "
                           f"(or {pip_name}), or remove train.{key}") from None
