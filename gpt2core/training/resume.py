"""Where a run starts: from step 0, resumed from its newest intact checkpoint, or a finished run kept.

The rules (checkpoints/<run>/ is not a declared output of the workflow, so it survives a killed job):
- a step checkpoint and no `finished.json`: the last run was killed; resume from the newest checkpoint that
  verifies (training.checkpoint.integrity warns about newer damaged ones);
- `finished.json` present and the same model, data, tokenizer, iterations and train settings (but for
  NON_WEIGHT_KEYS: log interval, checkpoint rotation, threads, launch layout): the finished run is this
  config's result: kept, its outputs rewritten, no step run (e.g. a rerun after the workflow was killed
  while its trainer ran on and finished); unless the workflow was told to train again (training.retrain's
  note): then, as after any change that can alter the weights, start from step 0, removing the old run's
  checkpoints.
Every rank reads the same files and so decides alike; only the main rank removes or prunes anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.training import retrain
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint import plain as ckpt

# train keys a finished run's weights do not depend on (the global batch is tp x dp x micro_batch x grad_accum)
NON_WEIGHT_KEYS = frozenset({"log_interval", "keep_last", "save_interval", "threads", "nproc_per_node", "nnodes",
                             "rdzv_endpoint"})
# what a checkpoint's meta must share with this run for its weights to be this config's
_SAME_RUN = ("model_config", "seq_len", "data_seed", "tokenizer_sha256", "manifest_sha256")


@dataclass(frozen=True)
class Start:
    """The decision: `resume` names the checkpoint to load; `keep` holds the finished run's meta and the
    keys that changed (none of which can change the weights); neither: train from step 0."""

    resume: Path | None = None
    keep: dict | None = None
    changed: tuple[str, ...] = ()
    had_finished: bool = False
    forced: bool = False


def decide(root: Path, run_meta: dict, train: dict, log: Callable[[str], None]) -> Start:
    """Fresh, resume or keep for the run in `root` (see the module docstring). `run_meta`: what this run's
    checkpoints record about it (model, window, data seed, tokenizer and manifest hashes); `train`: its
    train section as a dict (TrainConfig.to_dict, the form checkpoints store)."""
    had_finished = (root / ckpt.FINISHED).exists()
    found = ckpt.list_checkpoints(root)
    forced = retrain.requested(root)
    if found and not had_finished:
        latest = integrity.newest_intact(found, log)
        if latest is not None:
            return Start(resume=latest)
    elif found and not forced:
        kept = finished_run_to_keep(found[-1], run_meta, train)
        if kept is not None:
            return Start(keep=kept[0], changed=tuple(kept[1]))
    return Start(had_finished=had_finished, forced=forced)


def finished_run_to_keep(final: Path, run_meta: dict, train: dict) -> tuple[dict, list[str]] | None:
    """(meta, changed keys) when the finished run's final checkpoint is what this config would train:
    same model, data, tokenizer, iterations and train settings but for NON_WEIGHT_KEYS. None otherwise."""
    try:
        meta = ckpt.read_meta(final)
    except WikiGPTError:
        return None
    if (meta.get("state", {}).get("iteration") != train["iters"]
            or any(meta.get(k) != run_meta[k] for k in _SAME_RUN)):
        return None  # (the manifest's hash covers every shard's: the same hash, the same data)
    saved = meta["train_config"]
    changed = sorted(k for k in set(saved) | set(train) if saved.get(k) != train.get(k))
    if not set(changed) <= NON_WEIGHT_KEYS:
        return None
    try:  # last: it reads the whole checkpoint, which only a run about to be kept needs
        integrity.verify_checksums(final)
    except WikiGPTError:
        return None
    return meta, changed


def keep_message(root: Path, changed: tuple[str, ...]) -> str:
    what = (f"only {', '.join(changed)} changed, which cannot change its weights" if changed
            else "nothing changed (its outputs were lost, e.g. to a killed workflow)")
    return (f"previous run in {root} finished with the same model, data and training; {what}: keeping "
            "it and rewriting its outputs (`--forcerun train` trains again)")


def clear_for_fresh_start(root: Path, start: Start, log: Callable[[str], None]) -> None:
    """Before step 0 (main rank): remove the old run's checkpoints and its finished marker."""
    if not root.exists():
        return
    if start.had_finished:
        why = "--forcerun train" if start.forced else "its weights could differ under this config"
        log(f"previous run in {root} had finished: training again from step 0 ({why})")
    for old in ckpt.list_checkpoints(root):
        shutil.rmtree(old)
    (root / ckpt.FINISHED).unlink(missing_ok=True)


def check_resumable(latest: Path, meta: dict, run_meta: dict, train: dict, manifest: Path,
                    log: Callable[[str], None]) -> None:
    """A checkpoint resumed must have read the same windows of the same tokens; a changed train setting is
    allowed (a warning names it)."""
    root = latest.parent
    if meta.get("tokenizer_sha256") != run_meta["tokenizer_sha256"]:
        raise WikiGPTError(f"{latest}: made with another tokenizer than {manifest} names; "
                           f"remove {root} to train from scratch")
    for key, what in (("seq_len", "model.seq_len"), ("data_seed", "data.seed")):  # both decide the windows
        if key in meta and meta[key] != run_meta[key]:
            raise WikiGPTError(f"{latest}: made with {what} {meta[key]}, the config asks for "
                               f"{run_meta[key]}; remove {root} to train from scratch")
    changed = sorted(k for k, v in train.items() if meta["train_config"].get(k) != v)
    if changed:
        log(f"warning: train config changed since {latest.name}: {', '.join(changed)}")
