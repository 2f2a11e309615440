"""Sharded step checkpoints with torch.distributed.checkpoint (DCP): every rank writes its own shards of the
model and optimizer, nobody gathers the full model. Used whenever a run is tensor-parallel.

Layout of checkpoints/<run>/step_<NNNNNNN>/ (same name and meta.json as gpt2core.training.checkpoint.plain, so the
trainer lists and picks checkpoints the same way):
  meta.json           written last by rank 0; "layout": "dcp", "tp", "dp", model config, step, ...
  dcp/                DCP files (.metadata + one __<rank>_0.distcp per rank), keys model.* and optim.*
  rng/rank_<r>.pt     each rank's RNG state
All of it is written under .step_<NNNNNNN>.tmp/ and renamed by rank 0 after every rank finished, so a
directory under a final name is always complete; a rank killed mid-save leaves only the temporary name,
which the next start of the run removes (plain.remove_partial_saves).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import naming_full_disk, replace_dir
from gpt2core.model_limits import check_tensor_bytes
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint.dcp_read import read_metadata, safe_load
from gpt2core.training.checkpoint.io import reraise_os_error, torch_save
from gpt2core.training.checkpoint.plain import (
    FORMAT,
    check_compatible,
    prune_checkpoints,
    read_meta,
    rng_state,
    set_rng_state,
    step_dir,
)

LAYOUT = "dcp"
TIED = "lm_head.weight"  # tied to wte.weight: stored once


def is_sharded(ckpt: str | Path) -> bool:
    return (Path(ckpt) / "dcp").is_dir()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        model_sd = get_model_state_dict(model)
        optim_sd = None
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
    model_sd.pop(TIED, None)
    state = {"model": model_sd}
    if optim_sd is not None:
        state["optim"] = optim_sd
    return state


def save_sharded(root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                 meta: dict, keep_last: int) -> Path:
    """Collective: every rank calls it. Writes step_<step>/ (see module docstring), prunes old steps."""
    final = step_dir(root, step)
    tmp = final.with_name(f".{final.name}.tmp")
    rank = _rank()
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "rng").mkdir(parents=True)
    _barrier()
    world = dist.get_world_size() if dist.is_initialized() else 1
    try:
        with naming_full_disk(final):  # a full disk: one line naming the step (DCP's OSError names no file)
            try:
                dcp.save(_state(model, optimizer), checkpoint_id=str(tmp / "dcp"))
            except CheckpointException as exc:  # raise the OSError itself, not DCP's wrapper
                reraise_os_error(exc)
                raise
            torch_save(rng_state(), tmp / "rng" / f"rank_{rank:05d}.pt")
        _barrier()
        if rank == 0:
            full_meta = {"format": FORMAT, "step": step, **meta, "layout": LAYOUT, "world_size": world}
            with naming_full_disk(final):
                (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
                integrity.write_checksums(tmp)
            replace_dir(tmp, final)
    except BaseException:
        if world == 1:  # no other rank writes there: remove the partial copy (several ranks: the next start does)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank == 0:
        prune_checkpoints(root, step, keep_last)
    _barrier()
    return final


def check_complete(ckpt: Path, meta: dict) -> None:
    """A sharded checkpoint missing its DCP metadata or any rank's file is a hard error, never a guess."""
    if not (ckpt / "dcp" / ".metadata").is_file():
        raise WikiGPTError(f"{ckpt / 'dcp'}: sharded checkpoint has no .metadata (incomplete save)")
    integrity.check_dcp_metadata(ckpt / "dcp" / ".metadata")  # DCP unpickles it: allow only its classes
    world = int(meta.get("world_size", 1))
    for r in range(world):
        if not (ckpt / "rng" / f"rank_{r:05d}.pt").is_file():
            raise WikiGPTError(f"{ckpt / 'rng'}: rank_{r:05d}.pt missing (checkpoint of {world} ranks incomplete)")
    shards = list((ckpt / "dcp").glob("*.distcp"))
    if not shards:
        raise WikiGPTError(f"{ckpt / 'dcp'}: no shard files (*.distcp)")


def load_sharded(ckpt: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 model_config: dict, tp: int) -> dict:
    """Collective: restore this rank's shards of model and optimizer (and its RNG) in place; return meta.
    Saved under the same tp: each rank reads its own shards. Under another tp: load_resharded."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    if meta.get("layout") != LAYOUT:
        raise WikiGPTError(f"{ckpt}: not a sharded (DCP) checkpoint")
    if int(meta.get("tp", 1)) != tp and optimizer is not None:
        return load_resharded(ckpt, model, optimizer, model_config, tp)
    check_compatible(ckpt, meta, model_config)
    check_complete(ckpt, meta)
    state = _state(model, optimizer)
    safe_load(state, ckpt / "dcp")
    model_sd = state["model"]
    opts = StateDictOptions(strict=False)
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=state["optim"], options=opts)
    else:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, model_sd, options=opts)
    _load_rng(ckpt)
    return meta


# ---- resharding: resume under another tensor-parallel size ---------------------------------------------
READ_GROUP_BYTES = 256 << 20  # full tensors held at once while resharding (or the largest one, if bigger)


def read_groups(sizes: dict[str, int], budget: int) -> list[list[str]]:
    """Keys (sorted: every rank makes the same groups, each group is one collective read) cut into groups
    of at most `budget` bytes; a tensor larger than the budget is a group of its own."""
    groups: list[list[str]] = []
    used = budget
    for key in sorted(sizes):
        if used + sizes[key] > budget:
            groups.append([])
            used = 0
        groups[-1].append(key)
        used += sizes[key]
    return groups


def _read_full_groups(ckpt: Path, keys: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """The full saved tensors named by `keys` (DCP reassembles their shards), a bounded group at a time:
    a rank never holds the whole model and optimizer in host memory at once. Collective."""
    metadata = read_metadata(ckpt / "dcp").state_dict_metadata
    missing = [k for k in keys if not isinstance(metadata.get(k), TensorStorageMetadata)]
    if missing:
        raise WikiGPTError(f"{ckpt / 'dcp'}: tensor {missing[0]} missing")
    sizes = {k: metadata[k].size.numel() * metadata[k].properties.dtype.itemsize for k in keys}
    check_tensor_bytes(sum(sizes.values()), ckpt / "dcp" / ".metadata")
    for group in read_groups(sizes, READ_GROUP_BYTES):
        full = {k: torch.empty(metadata[k].size, dtype=metadata[k].properties.dtype) for k in group}
        safe_load(full, ckpt / "dcp")
        yield full


def _relayout(name: str, t: torch.Tensor, tp_old: int, tp_new: int, padded_new: int) -> torch.Tensor:
    """A full tensor saved at tp_old -> the full tensor a tp_new model holds (q/k/v regrouped, vocabulary
    rows trimmed or zero-padded; padded rows never carry a gradient, so their content is irrelevant)."""
    from gpt2core.parallel import qkv_from_tp_layout, qkv_to_tp_layout

    if name.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
        return qkv_to_tp_layout(qkv_from_tp_layout(t, tp_old), tp_new)
    if name in ("wte.weight", TIED) and t.shape[0] != padded_new:
        out = t.new_zeros(padded_new, *t.shape[1:])
        rows = min(padded_new, t.shape[0])
        out[:rows] = t[:rows]
        return out
    return t


def _fill(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of `full` into `target` (a DTensor shard or a plain tensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor):
        local = distribute_tensor(full.to(target.dtype), target.device_mesh, target.placements, src_data_rank=None)
        target.to_local().copy_(local.to_local())
    else:
        target.copy_(full.to(target.dtype))


def load_resharded(ckpt: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                   model_config: dict, tp: int) -> dict:
    """Collective: resume a checkpoint saved under another tp (and/or dp) into this run's layout.
    Every rank reads the full tensors it needs, READ_GROUP_BYTES at a time, and keeps its part of each."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    saved = {k: v for k, v in meta["model_config"].items() if k != "padded_vocab_size"}
    check_compatible(ckpt, {**meta, "model_config": saved},
                     {k: v for k, v in model_config.items() if k != "padded_vocab_size"})
    check_complete(ckpt, meta)
    tp_old, padded_new = int(meta.get("tp", 1)), int(model_config["padded_vocab_size"])
    model_sd, optim_sd = get_state_dict(model, optimizer)
    model_sd.pop(TIED, None)
    # saved key -> (the name that decides its layout, where the state dict holds it, its key there)
    places: dict[str, tuple[str, dict, str]] = {f"model.{name}": (name, model_sd, name) for name in model_sd}
    for fqn, states in optim_sd["state"].items():
        places.update({f"optim.state.{fqn}.{key}": (fqn, states, key) for key in states})
    with torch.no_grad():
        for full in _read_full_groups(ckpt, list(places)):
            for saved_key, tensor in full.items():
                name, holder, key = places[saved_key]
                if key == "step":  # an optimizer step count: a plain scalar tensor in every layout
                    holder[key] = tensor.clone()
                else:
                    _fill(holder[key], _relayout(name, tensor, tp_old, tp, padded_new))
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                   options=StateDictOptions(strict=False))
    _load_rng(ckpt)
    return meta


def _load_rng(ckpt: Path) -> None:
    """This rank's saved RNG state; a rank the saving run did not have (more ranks now, at any tp) takes
    rank 0's: the layout changed, so the run cannot be bitwise the uninterrupted one anyway."""
    rng_file = ckpt / "rng" / f"rank_{_rank():05d}.pt"
    if not rng_file.is_file():
        rng_file = ckpt / "rng" / "rank_00000.pt"
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))


def load_full_model_state(ckpt: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Offline, one process, no process group: (meta, the full model tensors as saved), i.e. in the
    tensor-parallel layout (padded to the tp size, q/k/v grouped per rank). gpt2core.export.merge undoes that."""
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    check_complete(ckpt, meta)
    try:
        metadata = read_metadata(ckpt / "dcp")
    except WikiGPTError:
        raise
    except Exception as exc:
        raise WikiGPTError(f"{ckpt / 'dcp' / '.metadata'}: unreadable ({exc})") from None
    wanted = {key[len("model."):]: md for key, md in metadata.state_dict_metadata.items()
              if key.startswith("model.") and isinstance(md, TensorStorageMetadata)}
    check_tensor_bytes(sum(md.size.numel() * md.properties.dtype.itemsize for md in wanted.values()),
                       ckpt / "dcp" / ".metadata")
    model_sd = {name: torch.empty(md.size, dtype=md.properties.dtype) for name, md in wanted.items()}
    if not model_sd:
        raise WikiGPTError(f"{ckpt / 'dcp'}: no model tensors in the checkpoint")
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        safe_load({"model": model_sd}, ckpt / "dcp", what="read", no_dist=True)
    return meta, model_sd
