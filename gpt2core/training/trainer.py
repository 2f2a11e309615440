"""The training loop: one run's model, optimizer, data, loss scaler and step loop, built from its typed config.

Why it is cut this way: each piece a tensor/data-parallel run must replace is its own function or module
(training.build, training.distributed.apply_parallelism, forward_backward, training.grads, the fp16 overflow
decision in training.loss_scale, training.checkpoint, the step in training.step), so gpt2core.parallel plugs
in without a rewrite; where a run starts (fresh, resumed or a finished run kept) is training.resume's.
Everything the next step needs is in the checkpoint or a pure function of the step (data order, LR), so a
resumed CPU fp32 run ends with bitwise the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm import tqdm

from gpt2core.config import ModelConfig, TrainConfig, check_run
from gpt2core.data.blend import blend_data
from gpt2core.data.loader import _DTYPES, Batch, BatchSource, load_manifest
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path, sha256_file, write_text_atomic
from gpt2core.parallel import dp_rank_and_size
from gpt2core.training import resume, retrain, shard_check
from gpt2core.training.build import build_loss, build_model, gpt_config
from gpt2core.training.checkpoint import plain as ckpt
from gpt2core.training.checkpoint import sharded as dckpt
from gpt2core.training.distributed import (
    DistEnv,
    all_reduce_sum,
    any_rank,
    apply_parallelism,
    barrier,
    init_distributed,
    prepare_device,
)
from gpt2core.training.flops import flops_per_token, peak_flops
from gpt2core.training.grads import (
    finish_grads_,
    fused_grad_scale,
    global_grad_norm,
    mesh_grad_norm,
    mesh_unscale_and_clip_,
    unscale_and_clip_,
)
from gpt2core.training.loss_scale import DynamicLossScaler
from gpt2core.training.metrics import MetricsLog
from gpt2core.training.optimizer import build_optimizer
from gpt2core.training.progress import ConsoleProgress
from gpt2core.training.schedule import lr_at
from gpt2core.training.shard_check import verify_shards
from gpt2core.training.step import evaluate, forward_backward, to_device
from gpt2core.training.step_graph import WholeStepGraph


@dataclass
class RunPaths:
    manifest: Path
    checkpoints: Path
    done: Path
    metrics: Path
    workdir: Path | None = None  # shards the manifest lists must lie under it (None: not checked)


@dataclass
class State:
    """What advances every iteration; `lr_step` only on steps the optimizer actually took."""

    iteration: int = 0
    lr_step: int = 0
    tokens: int = 0
    skipped: int = 0
    wall_time: float = 0.0
    last_loss: float | None = None
    last_valid: float | None = None


@dataclass
class _Launched:
    """An iteration whose work is queued and whose loss and gradient norm have not been read yet."""

    index: int  # 0-based; its metrics line says step index + 1
    lr: float
    scale: float
    loss: torch.Tensor
    norm: torch.Tensor
    t0: float
    t_launched: float = 0.0  # when its launch returned: on a synchronous device (CPU), when its work was done
    skip: bool = False  # decided before the optimizer step (fp16 with a host-side decision)
    values: tuple[float, float] | None = None  # (loss, norm), when read before the optimizer step

    def read(self) -> tuple[float, float]:
        return tuple(torch.stack([self.loss.float(), self.norm.float().to(self.loss.device)]).tolist())  # the sync


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """One training run: model, optimizer, data, loss scaler and the step loop, all from the config."""

    def __init__(self, model: ModelConfig, train: TrainConfig, data_seed: int, paths: RunPaths,
                 env: DistEnv | None = None) -> None:
        self.paths = paths
        self.env = env or init_distributed(train.device)
        self.device = self.env.device
        prepare_device(self.device, train.precision)
        self.precision = train.precision
        self.manifest = load_manifest(paths.manifest)
        tok = self.manifest["tokenizer"]
        self.plan = check_run(model, train, self.env.world_size, int(tok["vocab_size"]), self.device.type)
        self._verify_shards()  # after the config's checks: it may hash every shard
        self.train = train = train.with_layout(self.plan)  # dp: torchrun's world over tp, when not given
        self.tp = self.plan.tp > 1
        self.cfg = gpt_config(model, int(tok["vocab_size"]), tp=self.plan.tp)
        self.seq_len = model.seq_len
        self.data_seed = data_seed
        self.meta_base = {"model_config": self.cfg.to_dict(), "train_config": train.to_dict(),
                          "seq_len": self.seq_len, "data_seed": data_seed, "tokenizer_sha256": tok["sha256"],
                          "manifest_sha256": sha256_file(paths.manifest),
                          "padded_vocab_size": self.cfg.padded_vocab_size, "tp": self.plan.tp,
                          "dp": self.plan.dp}
        self.raw_model = build_model(self.cfg, train, self.device)
        model_module, self.mesh = apply_parallelism(self.raw_model, self.plan, self.device)
        self.dp_rank, self.dp_size = dp_rank_and_size(self.mesh)
        self.optimizer = build_optimizer(self.raw_model, train.lr, train.weight_decay, (train.beta1, train.beta2),
                                         train.eps, self.device.type)
        self.scaler = DynamicLossScaler(train.init_loss_scale, train.loss_scale_window, train.max_skipped_steps,
                                        enabled=self.precision == "fp16")
        self._fused_opt = bool(self.optimizer.defaults.get("fused"))
        # fp16 on one process with the fused AdamW: an overflow is skipped on the device, without a sync.
        self._skips_on_device = (self.precision == "fp16" and self.mesh is None and self.env.world_size == 1
                                 and self._fused_opt)
        self.loss_fn = build_loss(model_module, train, self.device, self.tp)
        self.train_source, self.valid_source = self._data(train)
        self.tokens_per_iter = train.micro_batch * train.grad_accum * self.seq_len * self.dp_size
        self.flops_per_iter = flops_per_token(self.cfg, self.seq_len) * self.tokens_per_iter
        # all devices' peak: flops_per_iter counts every dp rank's tokens, and tp splits each token's work
        device_peak = peak_flops(self.device, self.precision)
        self.peak = device_peak * self.env.world_size if device_peak else None
        self.step_graph = WholeStepGraph(self.optimizer, self.device) if train.cuda_graph else None
        self.state = State()
        self._prefetched: dict[int, list[Batch]] = {}
        self._last_finish = 0.0  # when the last iteration's work was done (an early-queued one's time starts there)
        self.metrics: MetricsLog | None = None
        self.last_saved: int | None = None

    def _data(self, tc: TrainConfig) -> tuple[BatchSource, dict[str, BatchSource] | None]:
        data = blend_data(self.manifest, self.paths.manifest, self.seq_len, self.data_seed, tc.micro_batch,
                          tc.grad_accum, self.dp_size, tc.mask_eod_loss)  # a tp group reads one batch
        self.valid_weights = data.weights
        if not data.valid:
            self.log(f"warning: no valid loss ({self.paths.manifest}: no corpus has a valid window)")
        return data.train, data.valid or None

    def _verify_shards(self) -> None:
        """The shards are the manifest's (gpt2core.training.shard_check) before anything reads them: the main
        rank checks sizes and hashes what changed since its last check; the others check sizes."""
        main = self.env.is_main
        verify_shards(self.manifest, self.paths.manifest, np.dtype(_DTYPES[self.manifest["dtype"]]).itemsize,
                      workdir=self.paths.workdir, hash_changed=main,
                      cache=self.paths.checkpoints / shard_check.CACHE if main else None)
        barrier()

    def log(self, message: str) -> None:
        if self.env.is_main:
            tqdm.write(message, file=sys.stderr)

    # ---- start: fresh, resume or keep (training.resume) ----------------------------------------------
    def start(self) -> int:
        """Decide fresh, resume or keep (training.resume); return the iteration to start from."""
        root = self.paths.checkpoints
        train = self.train.to_dict()
        if self.env.is_main:
            ckpt.remove_partial_saves(root)  # before deciding: a good copy a killed save set aside comes back
        barrier()
        start = resume.decide(root, self.meta_base, train, self.log)
        barrier()  # every rank has decided before rank 0 deletes anything, so all ranks decide alike
        if self.env.is_main:
            retrain.clear(root)  # a note for this start only
        if start.keep is not None:
            self.log(resume.keep_message(root, start.changed))
            if self.env.is_main:
                ckpt.prune_checkpoints(root, int(start.keep["step"]), self.train.keep_last)
            barrier()
            return self._restore_state(start.keep)
        if start.resume is None:
            if self.env.is_main:
                resume.clear_for_fresh_start(root, start, self.log)
            barrier()
            self.metrics = MetricsLog(root / "metrics.jsonl") if self.env.is_main else None
            return 0
        meta = self._load(start.resume)
        resume.check_resumable(start.resume, meta, self.meta_base, train, self.paths.manifest, self.log)
        self.scaler.load_state_dict(meta["scaler"])
        self.log(f"resuming from {start.resume} (iteration {meta['state']['iteration']})")
        return self._restore_state(meta)

    def _restore_state(self, meta: dict) -> int:
        """The counters a checkpoint's meta holds, and the metrics history cut back to its iteration."""
        s = meta["state"]
        self.state = State(s["iteration"], s["lr_step"], s["tokens"], s["skipped"], s["wall_time"],
                           s["last_loss"], s["last_valid"])
        root = self.paths.checkpoints
        self.metrics = MetricsLog(root / "metrics.jsonl", self.state.iteration) if self.env.is_main else None
        return self.state.iteration

    def _load(self, latest: Path) -> dict:
        """A sharded (DCP) checkpoint into any layout (resharded if its tp differs); a one-process
        checkpoint into a one-process run."""
        if dckpt.is_sharded(latest):
            return dckpt.load_sharded(latest, self.raw_model, self.optimizer, self.cfg.to_dict(), self.plan.tp)
        if self.mesh is not None:
            raise WikiGPTError(f"{latest}: written by a one-process run; resume it with train.tp=1 and "
                               f"train.dp=1, or remove {latest.parent} to start over")
        return ckpt.load_checkpoint(latest, self.raw_model, self.optimizer, self.cfg.to_dict())

    # ---- one iteration ----------------------------------------------------------------------------
    def _batches(self, iteration: int) -> list[Batch]:
        """This rank's micro-batches of `iteration` on the device (a pure function of seed, step, rank)."""
        return [to_device(self.train_source.get(iteration, m, self.dp_rank), self.device)
                for m in range(self.train.grad_accum)]

    def step(self) -> dict:
        """Run iteration `state.iteration` and return its metrics line (queue it, then read it)."""
        return self._finish(self._launch(self.state.iteration, self.state.lr_step))

    def _launch(self, index: int, lr_step: int) -> _Launched:
        """Queue iteration `index` (0-based) at LR step `lr_step`: forward, backward, norm, optimizer step.

        Why the order: the host reads the loss and gradient norm once (one sync, in _finish), after the next
        batch is loaded and copied and after the optimizer step is queued, so the GPU never waits for the host
        inside a step; run() also queues the next step before reading this one where it may (see
        _may_queue_next). A non-finite bf16/fp32 step still raises before anything is saved. An fp16 overflow
        is skipped on the device (the fused AdamW's `found_inf`) and booked on the host at that same sync; where
        the ranks or the optimizer cannot do that (a mesh, no fused kernel), fp16 syncs before the step."""
        tc = self.train
        t0 = time.perf_counter()
        lr = lr_at(lr_step, lr=tc.lr, min_lr=tc.min_lr, iters=tc.iters, warmup=tc.warmup,
                   decay=tc.decay)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self._prefetched.pop(index, None) or self._batches(index)
        if self.step_graph is not None:  # train.cuda_graph: the whole step as one replayed CUDA graph
            loss, norm = self.step_graph.run(batches, lr, self._graphed_step)
            self._prefetched = {index + 1: self._batches(index + 1)}
            return _Launched(index, lr, 1.0, loss, norm, t0, t_launched=time.perf_counter())
        scale = self.scaler.scale
        loss = forward_backward(self.loss_fn, batches, scale, self.device, self.tp)
        params = [p for p in self.raw_model.parameters() if p.grad is not None]
        if self.mesh is None:
            norm = global_grad_norm(params) / scale
        else:  # sharded and replicated gradients, each counted once over the whole mesh
            finish_grads_(params)
            norm = mesh_grad_norm(params, self.mesh) / scale
            loss = all_reduce_sum(loss, self.mesh.get_group("dp")) / self.dp_size
        if self.device.type == "cuda":  # load the next batch while the GPU runs this one's backward
            self._prefetched = {index + 1: self._batches(index + 1)}
        launched = _Launched(index, lr, scale, loss, norm, t0)
        if self.precision == "fp16" and not self._skips_on_device:  # all ranks agree on an overflow first
            launched.values = launched.read()
            launched.skip = self.scaler.update(any_rank(not math.isfinite(launched.values[1]), self.device),
                                               index + 1)
        if not launched.skip:
            if self._skips_on_device:  # the fused kernel leaves weights, moments and its step count alone on 1.0
                self.optimizer.found_inf = (~torch.isfinite(norm)).float()
            if self.mesh is None and self._fused_opt:  # unscale and clip inside the kernel: one pass fewer
                self.optimizer.grad_scale = fused_grad_scale(norm * scale, 1.0 / scale, tc.grad_clip,
                                                             self.device)
            elif self.mesh is None:
                unscale_and_clip_(params, norm * scale, 1.0 / scale, tc.grad_clip)
            else:
                mesh_unscale_and_clip_(params, norm * scale, 1.0 / scale, tc.grad_clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        launched.t_launched = time.perf_counter()
        return launched

    def _graphed_step(self, batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """The bf16/fp32 one-process step that train.cuda_graph captures: no host decision, nothing read."""
        loss = forward_backward(self.loss_fn, batches, 1.0, self.device)
        norm = global_grad_norm([p for p in self.raw_model.parameters() if p.grad is not None])
        self.optimizer.grad_scale = fused_grad_scale(norm, 1.0, self.train.grad_clip, self.device)
        self.optimizer.step()
        return loss, norm

    def _finish(self, q: _Launched) -> dict:
        """Read a queued iteration's loss and norm (the sync), book it, return its metrics line."""
        st = self.state
        assert q.index == st.iteration, (q.index, st.iteration)  # iterations finish in order
        loss_value, norm_value = q.values if q.values is not None else q.read()
        skip = q.skip
        if self._skips_on_device:
            skip = self.scaler.update(not math.isfinite(norm_value), q.index + 1)
        if skip:
            st.skipped += 1
        else:
            st.lr_step += 1
        if self.precision != "fp16":
            if not math.isfinite(loss_value) or not math.isfinite(norm_value):
                last = ckpt.latest_checkpoint(self.paths.checkpoints)
                what = "loss" if not math.isfinite(loss_value) else "gradient norm"
                raise WikiGPTError(f"non-finite {what} at iteration {q.index + 1} ({self.precision}); "
                                   f"last good checkpoint: {last or 'none'} (this step's update is not saved)")
        # When its work was done: on CUDA when the read above returned; on CPU, where a launch runs the step
        # itself, when its launch returned (the next step may have run since, queued ahead). Its time starts
        # at its launch, or when the previous step was done if it was queued before that.
        done = time.perf_counter() if self.device.type == "cuda" else q.t_launched
        dt = done - max(q.t0, self._last_finish)
        self._last_finish = done
        st.iteration += 1
        st.tokens += self.tokens_per_iter
        st.wall_time += dt
        st.last_loss = loss_value
        tps = self.tokens_per_iter / dt
        return {"step": st.iteration, "tokens": st.tokens, "loss": loss_value, "lr": q.lr,
                "grad_norm": norm_value, "loss_scale": q.scale, "skipped": skip, "tokens_per_s": round(tps, 1),
                "mfu": round(self.flops_per_iter / dt / self.peak, 4) if self.peak else None,
                "mem_mb": round(memory_mb(self.device), 1), "step_time_s": round(dt, 4)}

    def _evaluates(self, it: int) -> bool:
        """Is the valid loss computed after iteration `it` (1-based)?"""
        tc = self.train
        return self.valid_source is not None and (it % tc.eval_interval == 0 or it == tc.iters)

    def _saves(self, it: int) -> bool:
        """Is a checkpoint written after iteration `it` (1-based)?"""
        return it % self.train.save_interval == 0 or it == self.train.iters

    def _may_queue_next(self, it: int) -> bool:
        """May iteration it + 1 be queued before iteration `it` (1-based) is read? Only where nothing the next
        step needs depends on this one's values: not fp16 (the loss scale and the LR wait for the overflow
        check), and not where `it` is evaluated, saved or last (those must see exactly its weights)."""
        return (self.precision != "fp16" and it < self.train.iters and not self._evaluates(it)
                and not self._saves(it))

    def save(self) -> Path | None:
        st = self.state
        meta = {**self.meta_base, "scaler": self.scaler.state_dict(),
                "state": {"iteration": st.iteration, "lr_step": st.lr_step, "tokens": st.tokens,
                          "skipped": st.skipped, "wall_time": st.wall_time, "last_loss": st.last_loss,
                          "last_valid": st.last_valid}}
        if self.mesh is not None:  # every rank writes its shards (torch.distributed.checkpoint)
            return dckpt.save_sharded(self.paths.checkpoints, st.iteration, self.raw_model, self.optimizer, meta,
                                      self.train.keep_last)
        path = None
        if self.env.is_main:
            path = ckpt.save_checkpoint(self.paths.checkpoints, st.iteration, self.raw_model, self.optimizer,
                                        meta, self.train.keep_last)
        barrier()
        return path

    def iteration(self) -> dict:
        """One scheduled iteration: step, valid loss and checkpoint when due, metrics line."""
        return self._book(self.step())

    def _book(self, record: dict) -> dict:
        """After an iteration is read: valid loss and checkpoint when due, its metrics line."""
        tc = self.train
        it = self.state.iteration
        if self._evaluates(it):
            losses = {name: evaluate(self.loss_fn, src, tc.eval_iters, self.device, self.tp)
                      for name, src in self.valid_source.items()}
            w = {name: self.valid_weights.get(name, 1.0) for name in losses}
            self.state.last_valid = sum(losses[n] * w[n] for n in losses) / sum(w.values())
            record["valid_loss"] = self.state.last_valid
            if len(losses) > 1:
                record["valid_loss_by_corpus"] = losses
        if self.metrics is not None:
            self.metrics.write(record)
        if self._saves(it):
            self.save()
            self.last_saved = it
        return record

    def run(self, console: TextIO | None = None) -> dict:
        """Train to `iters`, evaluating and checkpointing on schedule; write metrics and done.json. With
        `console`, rank 0 also writes a few progress lines there (training.progress)."""
        tc = self.train
        start = self.start()
        self.last_saved = start if start else None
        self.loss_fn.train()
        bar = tqdm(total=tc.iters, initial=start, desc="train", unit="it", file=sys.stderr,
                   mininterval=2.0, disable=not self.env.is_main, dynamic_ncols=False, ncols=100)
        progress = ConsoleProgress(tc.iters, start, console) if console and self.env.is_main else None
        for record in self.iterations():
            bar.update(1)
            if progress is not None:
                progress.update(self.state.iteration, record)
            if self.state.iteration % tc.log_interval == 0:
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        bar.close()
        if self.last_saved != self.state.iteration:
            self.save()
        return self.finish()

    def iterations(self) -> Iterator[dict]:
        """The remaining iterations' metrics lines, in order. Where _may_queue_next allows, iteration i + 1 is
        queued before iteration i is read, so the GPU has the next step's work while the host reads, logs
        and launches (on CPU the order changes nothing: the same ops run in the same order)."""
        iters, queued = self.train.iters, None
        while True:
            index = queued.index + 1 if queued is not None else self.state.iteration
            if index >= iters:
                break
            # a queued iteration is never fp16, so the optimizer steps on it and the LR step advances by one
            launched = self._launch(index, self.state.lr_step + (queued is not None))
            if queued is not None:
                yield self._book(self._finish(queued))
            queued = launched if self._may_queue_next(index + 1) else None
            if queued is None:  # the last iteration is never queued ahead, so none is left over
                yield self._book(self._finish(launched))

    def finish(self) -> dict:
        st = self.state
        final = ckpt.step_dir(self.paths.checkpoints, st.iteration)
        summary = {"iterations": st.iteration, "tokens": st.tokens, "final_train_loss": st.last_loss,
                   "final_valid_loss": st.last_valid, "skipped_steps": st.skipped,
                   "wall_time_s": round(st.wall_time, 3), "checkpoint": str(final)}
        if self.env.is_main:
            self.metrics.close()
            with atomic_path(self.paths.metrics) as tmp:
                shutil.copyfile(self.paths.checkpoints / "metrics.jsonl", tmp)
            write_text_atomic(self.paths.done, json.dumps(summary, indent=2) + "\n")
        barrier()
        # Last: a run that dies before this line resumes at its final checkpoint and only rewrites the
        # outputs; one that finds the marker starts again from step 0 (a forced rerun of a finished run).
        if self.env.is_main:
            write_text_atomic(self.paths.checkpoints / ckpt.FINISHED, json.dumps(summary) + "\n")
        return summary
