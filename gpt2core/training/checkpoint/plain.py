"""Step checkpoints: checkpoints/<run>/step_<NNNNNNN>/ written to a temporary directory and renamed, so a
directory under a final name is always complete. Loading reads safetensors and `torch.load(weights_only=True)`
only (no pickled code). The model config is stored and a checkpoint from another config is a clear error.

Layout of a step directory: model.safetensors (tied lm_head stored once, as wte), optimizer.pt, rng.pt,
meta.json (step, LR step, tokens, loss scaler, configs, tokenizer hash, padded vocabulary, tp size).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir, remove_stale_temporaries
from gpt2core.model import GPTConfig
from gpt2core.model_limits import check_model_size
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint.io import save_safetensors, torch_save

FORMAT = 1
FINISHED = "finished.json"


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:07d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete step directories, oldest first (temporary names start with '.', so they never match)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit() and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda_{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict for safetensors: tied lm_head dropped (safetensors refuses shared storage)."""
    sd = model.state_dict()
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items() if k != "lm_head.weight"}


def save_checkpoint(root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict, keep_last: int) -> Path:
    """Write step_<step>/ atomically, then delete all but the newest `keep_last` step directories."""
    final = step_dir(root, step)
    with atomic_dir(final) as tmp:
        save_safetensors(model_tensors(model), tmp / "model.safetensors")  # a full disk: its OSError
        torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch_save(rng_state(), tmp / "rng.pt")
        full_meta = {"format": FORMAT, "step": step, **meta}
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
        integrity.write_checksums(tmp)
    prune_checkpoints(root, step, keep_last)
    return final


def remove_partial_saves(root: str | Path) -> None:
    """Before a run starts (its lock held, so no other trainer writes here): delete what saves killed or
    failed before their rename left, instead of keeping it on disk until the run saves that step again.
    A sharded save's `.step_N.tmp` has no writer tag (every rank writes into it); a plain save's
    `.step_N.tmp-<tag>` / `.step_N.old-<tag>` go as fsutil.remove_stale_temporaries decides (an `.old-` copy
    whose `step_N` is missing is the previous good one: put back)."""
    root = Path(root)
    if not root.is_dir():
        return
    for partial in root.glob(".step_*.tmp"):
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
    steps = {p.name[1:].split(".", 1)[0] for p in root.glob(".step_*.*-*")}
    for name in sorted(steps):
        if name[5:].isdigit():
            remove_stale_temporaries(root / name)


def prune_checkpoints(root: str | Path, newest: int, keep_last: int) -> None:
    """Keep the checkpoint just written (step `newest`) and the keep_last - 1 before it; delete older ones.

    Why not "the keep_last highest steps": after a resume fell back past damaged newer checkpoints, the one
    just written has a lower step than they do, and counting them would delete it and every intact one.
    Newer (damaged) directories are left alone: training overwrites them when it reaches their step."""
    older = [p for p in list_checkpoints(root) if int(p.name[5:]) < newest]
    for old in older[:max(0, len(older) - (keep_last - 1))]:
        shutil.rmtree(old)


def read_meta(ckpt: str | Path) -> dict:
    path = Path(ckpt) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{path}: missing or unreadable checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model_config" not in meta:
        raise WikiGPTError(f"{path}: not a wikigpt checkpoint (format {FORMAT})")
    return meta


def check_compatible(ckpt: Path, meta: dict, model_config: dict) -> None:
    """A checkpoint made with another model config cannot be loaded: name the first differing key."""
    stored = meta["model_config"]
    for key in sorted(set(stored) | set(model_config)):
        if stored.get(key) != model_config.get(key):
            raise WikiGPTError(f"{ckpt}: checkpoint has model {key}={stored.get(key)!r}, the config asks for "
                               f"{model_config.get(key)!r} (use another run_name or remove {ckpt.parent})")


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WikiGPTError(f"{path}: unreadable checkpoint weights ({exc})") from None


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise WikiGPTError(f"{path}: unreadable checkpoint file ({exc})") from None


def load_checkpoint(ckpt: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_config: dict) -> dict:
    """Restore model, optimizer and RNG state in place; return meta.json (step, scaler, ...)."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    check_compatible(ckpt, meta, model_config)
    tensors = _load_tensors(ckpt / "model.safetensors")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise WikiGPTError(f"{ckpt / 'model.safetensors'}: tensors do not match the model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if optimizer is not None:
        optimizer.load_state_dict(_torch_load(ckpt / "optimizer.pt"))
    set_rng_state(_torch_load(ckpt / "rng.pt"))
    return meta


def full_state_dict(ckpt: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """One checkpoint -> (GPTConfig, full unsharded state dict). The place a tp>1 merge plugs in."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    if int(meta.get("tp", 1)) != 1:
        raise WikiGPTError(f"{ckpt}: tensor-parallel checkpoint (tp={meta['tp']}) needs gpt2core.export.merge")
    cfg = config_from_meta(ckpt, meta)
    sd = _load_tensors(ckpt / "model.safetensors")
    sd["lm_head.weight"] = sd["wte.weight"]
    return cfg, sd


def config_from_meta(ckpt: Path, meta: dict) -> GPTConfig:
    """The GPTConfig meta.json records, its sizes bounded before anything is built from them."""
    stored = meta.get("model_config")
    source = ckpt / "meta.json"
    if not isinstance(stored, dict):
        raise WikiGPTError(f"{source}: bad model_config (not an object)")
    check_model_size(stored, source, {k: f"model_config.{k}" for k in stored})
    try:
        return GPTConfig(**stored)
    except (TypeError, ValueError) as exc:
        raise WikiGPTError(f"{source}: bad model_config ({exc})") from None
