"""The trainer in process (CPU): LR schedule, parameter groups, loss falls, fp16 overflow skips, NaN stops,
checkpoint rotation, resume of the metrics history, mismatched checkpoints, fresh start after a finished run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_helpers import tiny_sections, typed, write_manifest

from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig, lm_loss
from gpt2core.training import retrain
from gpt2core.training.checkpoint import plain as ckpt
from gpt2core.training.flops import flops_per_token
from gpt2core.training.loss_scale import DynamicLossScaler
from gpt2core.training.metrics import read_metrics
from gpt2core.training.optimizer import param_groups
from gpt2core.training.schedule import lr_at, warmup_iters
from gpt2core.training.trainer import RunPaths, Trainer

TIMING = {"tokens_per_s", "mfu", "mem_mb", "step_time_s"}


def make_trainer(tmp_path: Path, run: str = "run", model: dict | None = None, data_seed: int = 1234,
                 **train: object) -> Trainer:
    manifest = tmp_path / "manifest.json"
    if not manifest.exists():
        write_manifest(tmp_path)
    mc, tc = tiny_sections(**train)
    mc.update(model or {})
    paths = RunPaths(manifest, tmp_path / "checkpoints" / run, tmp_path / run / "done.json",
                     tmp_path / run / "metrics.jsonl")
    return Trainer(*typed(mc, tc), data_seed, paths)


def steps(trainer: Trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def test_lr_schedule_warmup_then_cosine_to_min_lr() -> None:
    kw = {"lr": 1.5e-4, "min_lr": 1e-5, "iters": 320000, "warmup": 0.01, "decay": "cosine"}
    assert warmup_iters(0.01, 320000) == 3200 and warmup_iters(50, 1000) == 50
    assert lr_at(0, **kw) == pytest.approx(1.5e-4 / 3200)
    assert lr_at(3199, **kw) == pytest.approx(1.5e-4)
    assert lr_at(3200 + (320000 - 3200) // 2, **kw) == pytest.approx((1.5e-4 + 1e-5) / 2)
    assert lr_at(320000, **kw) == pytest.approx(1e-5)
    linear = {**kw, "decay": "linear", "warmup": 0}
    assert lr_at(160000, **linear) == pytest.approx((1.5e-4 + 1e-5) / 2)
    assert lr_at(5, **{**kw, "decay": "constant", "warmup": 0}) == 1.5e-4


def test_no_weight_decay_on_biases_and_layernorm() -> None:
    model = GPT(GPTConfig.padded(300, 128, n_positions=16, n_layer=2, n_head=2, n_embd=16))
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and "ln_" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "ln_" in names[id(p)] for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_parameters()


@pytest.mark.parametrize(("name", "tflops"), [("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                                              ("NVIDIA H100 NVL", 835), ("NVIDIA H200", 989),
                                              ("NVIDIA A100-SXM4-80GB", 312), ("Some Future GPU", None)])
def test_device_peak_by_name(monkeypatch: pytest.MonkeyPatch, name: str, tflops: float | None) -> None:
    """The PCIe and NVL H100s run slower clocks than the SXM one: counting them at 989 would understate MFU."""
    from gpt2core.training.flops import peak_flops

    monkeypatch.delenv("WIKIGPT_PEAK_TFLOPS", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    peak = peak_flops(torch.device("cuda"), "bf16")
    assert peak == (tflops * 1e12 if tflops else None)


def test_flops_per_token_matches_the_spec_anchor() -> None:
    cfg = GPTConfig.padded(50257, 128, n_positions=1024)
    assert flops_per_token(cfg, 1024) == pytest.approx(855e6, rel=2e-3)
    assert flops_per_token(GPTConfig.padded(50257, 128, n_positions=512), 512) == pytest.approx(798e6, rel=2e-3)


def test_loss_scaler_halves_on_overflow_grows_after_window_and_gives_up() -> None:
    s = DynamicLossScaler(init_scale=1024, window=3, max_skipped=3)
    assert s.update(True, 1) and s.scale == 512
    assert not s.update(False, 2) and not s.update(False, 3) and s.scale == 512
    assert not s.update(False, 4) and s.scale == 1024
    s.update(True, 5)
    s.update(True, 6)
    with pytest.raises(WikiGPTError, match="3 consecutive overflowing steps"):
        s.update(True, 7)


def test_loss_falls(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, iters=120, eval_interval=40, save_interval=120)
    summary = trainer.run()
    lines = read_metrics(trainer.paths.metrics)
    assert [m["step"] for m in lines] == list(range(1, 121))
    first, last = sum(m["loss"] for m in lines[:5]) / 5, sum(m["loss"] for m in lines[-5:]) / 5
    assert first > math.log(300) - 0.3 and last < first - 1.0
    valid = [m["valid_loss"] for m in lines if "valid_loss" in m]
    assert len(valid) == 3 and valid[-1] < valid[0] - 1.0
    done = json.loads(trainer.paths.done.read_text())
    assert done == summary and done["iterations"] == 120 and done["tokens"] == 120 * 4 * 32
    assert Path(done["checkpoint"]).name == "step_0000120"


def test_fp16_injected_inf_skips_step_halves_scale_keeps_lr(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, precision="fp16", init_loss_scale=1024, warmup=10)
    trainer.start()
    first = steps(trainer, 2)
    assert not any(m["skipped"] for m in first)
    assert trainer._skips_on_device, "one CPU process with the fused AdamW: the skip should happen on the device"
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    moments_before = [{k: v.clone() for k, v in s.items()} for s in trainer.optimizer.state.values()]
    opt_steps = trainer.state.lr_step
    hook = trainer.raw_model.h[0].mlp.c_fc.weight.register_hook(lambda g: g * float("inf"))
    bad = trainer.step()
    hook.remove()
    assert bad["skipped"] and bad["loss_scale"] == 1024 and trainer.scaler.scale == 512
    assert trainer.state.lr_step == opt_steps and trainer.state.iteration == 3
    for key, value in trainer.raw_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for state, old in zip(trainer.optimizer.state.values(), moments_before, strict=True):  # incl. step counts
        assert all(torch.equal(state[k], old[k]) for k in old), "a skipped step changed the optimizer state"
    after = trainer.step()
    assert not after["skipped"] and after["loss_scale"] == 512
    assert after["lr"] == bad["lr"] and bad["lr"] > first[-1]["lr"]  # the LR did not advance over the skip


def test_nan_loss_in_fp32_stops_with_last_good_checkpoint_intact(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, save_interval=5)
    trainer.start()
    steps(trainer, 5)
    saved = trainer.save()
    weights = (saved / "model.safetensors").read_bytes()
    with torch.no_grad():
        trainer.raw_model.h[1].ln_2.weight[0] = float("nan")
    with pytest.raises(WikiGPTError, match=f"non-finite loss at iteration 6 .*{saved}"):
        trainer.step()
    assert (saved / "model.safetensors").read_bytes() == weights
    assert ckpt.latest_checkpoint(trainer.paths.checkpoints) == saved


def test_keep_last_rotates_checkpoints(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, iters=12, save_interval=2, keep_last=2)
    trainer.run()
    assert [p.name for p in ckpt.list_checkpoints(trainer.paths.checkpoints)] == ["step_0000010", "step_0000012"]
    assert not [p for p in trainer.paths.checkpoints.iterdir() if p.name.startswith(".")]


def test_resume_in_process_continues_the_history_exactly(tmp_path: Path) -> None:
    straight = make_trainer(tmp_path, run="a")
    straight.run()
    killed = make_trainer(tmp_path, run="b")
    killed.start()
    for _ in range(13):  # checkpoint at 10, three more logged steps, then "killed"
        killed.iteration()
    killed.metrics.close()
    assert len(read_metrics(killed.paths.checkpoints / "metrics.jsonl")) == 13
    resumed = make_trainer(tmp_path, run="b")
    assert resumed.start() == 10
    resumed.metrics.close()
    resumed = make_trainer(tmp_path, run="b")
    resumed.run()
    a = [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(straight.paths.metrics)]
    b = [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(resumed.paths.metrics)]
    assert a == b and len(a) == 20
    for key, value in straight.raw_model.state_dict().items():
        assert torch.equal(resumed.raw_model.state_dict()[key], value), key


def test_mismatched_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.start()
    steps(trainer, 3)
    saved = trainer.save()
    other = make_trainer(tmp_path, model={"n_embd": 64})
    with pytest.raises(WikiGPTError, match=f"{saved}: checkpoint has model n_embd=32, the config asks for 64"):
        other.start()


def test_after_a_finished_run_training_starts_again_from_zero(tmp_path: Path) -> None:
    first = make_trainer(tmp_path, iters=10, save_interval=5)
    first.run()
    assert (first.paths.checkpoints / ckpt.FINISHED).exists()
    again = make_trainer(tmp_path, iters=6, save_interval=3)
    assert again.start() == 0
    assert ckpt.list_checkpoints(again.paths.checkpoints) == []
    again.metrics.close()
    again = make_trainer(tmp_path, iters=6, save_interval=3)
    again.run()
    assert [m["step"] for m in read_metrics(again.paths.metrics)] == list(range(1, 7))


def test_seq_len_longer_than_positions_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(WikiGPTError, match="model.seq_len 64 exceeds model.n_positions 32"):
        make_trainer(tmp_path, model={"seq_len": 64})


def test_gradient_accumulation_counts_every_micro_batch(tmp_path: Path) -> None:
    """A step's loss is the mean over its three different micro-batches, and its gradient is the gradient of
    that mean (the same update as one batch holding all three), not of the first micro-batch alone."""
    import copy

    trainer = make_trainer(tmp_path, model={"dropout": 0.0}, iters=4, micro_batch=2, grad_accum=3, save_interval=4)
    trainer.start()
    reference = copy.deepcopy(trainer.raw_model)
    micro = [trainer.train_source.get(0, m) for m in range(3)]
    assert len({tuple(b.x.flatten().tolist()) for b in micro}) == 3  # three different micro-batches
    losses = [lm_loss(reference(b.x), b.y, b.mask) for b in micro]
    mean = torch.stack(losses).mean()
    mean.backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters()}
    captured = {}
    real_step = trainer.optimizer.step

    def step_capturing_grads(*args: object, **kw: object) -> object:
        captured.update({n: p.grad.clone() for n, p in trainer.raw_model.named_parameters()})
        return real_step(*args, **kw)

    trainer.optimizer.step = step_capturing_grads
    first = trainer.step()
    assert first["loss"] == pytest.approx(mean.item(), rel=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(captured[name], grad, rtol=1e-5, atol=1e-7)
    trainer.metrics.close()
    summary = make_trainer(tmp_path, run="full", iters=4, micro_batch=2, grad_accum=3, save_interval=4).run()
    assert summary["tokens"] == 4 * 2 * 3 * 32


def test_cli_bad_manifest_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    mc, tc = tiny_sections()
    proc = subprocess.run([sys.executable, "-m", "gpt2core.train", "--manifest", str(tmp_path / "nope.json"),
                           "--model", json.dumps(mc), "--train", json.dumps(tc), "--data-seed", "1234", "--checkpoints",
                           str(tmp_path / "ck"), "--done", str(tmp_path / "done.json"), "--metrics",
                           str(tmp_path / "m.jsonl")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'nope.json'}: cannot read manifest")
    assert not (tmp_path / "done.json").exists()


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
def test_compiled_run_follows_the_eager_run(tmp_path: Path) -> None:
    """train.compile compiles model and loss together; on CPU it trains the same run as eager, to rounding."""
    eager = steps(make_trainer(tmp_path, "eager", {"dropout": 0.0}, iters=6), 6)
    compiled_trainer = make_trainer(tmp_path, "compiled", {"dropout": 0.0}, iters=6, compile=True)
    assert isinstance(compiled_trainer.loss_fn, torch._dynamo.eval_frame.OptimizedModule)
    compiled = steps(compiled_trainer, 6)
    for a, b in zip(eager, compiled, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (a["loss"], b["loss"])


def launch_order(trainer: Trainer) -> list[str]:
    """Record the order in which run() queues ("L3") and reads ("F3") iterations (1-based)."""
    events: list[str] = []
    launch, finish = trainer._launch, trainer._finish

    def logged_launch(index: int, lr_step: int) -> object:
        events.append(f"L{index + 1}")
        return launch(index, lr_step)

    def logged_finish(q: object) -> dict:
        events.append(f"F{q.index + 1}")
        return finish(q)

    trainer._launch, trainer._finish = logged_launch, logged_finish
    return events


def test_run_queues_the_next_step_before_reading_this_one_except_at_eval_save_and_end(tmp_path: Path) -> None:
    """bf16/fp32: step i + 1 is queued before step i's loss is read (the GPU keeps working while the host
    reads and logs), except where i is evaluated, saved or last; the run is the same as one step at a time."""
    trainer = make_trainer(tmp_path, "ahead", iters=6, eval_interval=3, save_interval=4)
    events = launch_order(trainer)
    trainer.run()
    assert events == ["L1", "L2", "F1", "L3", "F2", "F3", "L4", "F4", "L5", "L6", "F5", "F6"]
    one_by_one = make_trainer(tmp_path, "one_by_one", iters=6, eval_interval=3, save_interval=4)
    one_by_one.start()
    for _ in range(6):
        one_by_one.iteration()
    one_by_one.metrics.close()
    a = [{k: v for k, v in m.items() if k not in TIMING} for m in read_metrics(trainer.paths.metrics)]
    b = [{k: v for k, v in m.items() if k not in TIMING}
         for m in read_metrics(one_by_one.paths.checkpoints / "metrics.jsonl")]
    assert a == b and [m["step"] for m in a] == list(range(1, 7)) and "valid_loss" in a[2]
    assert [m["lr"] for m in a] == [lr_at(i, lr=3e-3, min_lr=3e-4, iters=6, warmup=2, decay="cosine")
                                    for i in range(6)]
    for key, value in one_by_one.raw_model.state_dict().items():
        assert torch.equal(trainer.raw_model.state_dict()[key], value), key


def test_fp16_run_reads_every_step_before_queueing_the_next(tmp_path: Path) -> None:
    """The loss scale and the LR of step i + 1 depend on whether step i overflowed."""
    trainer = make_trainer(tmp_path, iters=3, precision="fp16", save_interval=10, eval_interval=10)
    events = launch_order(trainer)
    trainer.run()
    assert events == ["L1", "F1", "L2", "F2", "L3", "F3"]


def test_nan_found_after_the_next_step_was_queued_names_its_iteration_and_saves_nothing(tmp_path: Path) -> None:
    """Iteration 7 goes NaN while 8 is already queued: the error names 7, step_0000005 stays the last
    checkpoint, byte for byte, and the metrics end at 6."""
    trainer = make_trainer(tmp_path, iters=10, save_interval=5, eval_interval=100)
    calls = {"n": 0}

    def poison(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 7 else output  # the 7th training forward

    trainer.raw_model.ln_f.register_forward_hook(poison)
    events = launch_order(trainer)
    with pytest.raises(WikiGPTError, match=r"non-finite loss at iteration 7 .*step_0000005"):
        trainer.run()
    assert events == ["L1", "L2", "F1", "L3", "F2", "L4", "F3", "L5", "F4", "F5", "L6", "L7", "F6", "L8", "F7"]
    assert [p.name for p in ckpt.list_checkpoints(trainer.paths.checkpoints)] == ["step_0000005"]
    assert [m["step"] for m in read_metrics(trainer.paths.checkpoints / "metrics.jsonl")] == list(range(1, 7))


def test_clip_folded_into_the_fused_adamw_equals_clipping_the_gradients_first() -> None:
    """On one process the clip coefficient reaches the fused AdamW as its grad_scale (the kernel divides by
    it) instead of a separate pass over the gradients: the same update, to fp32 rounding, for a clipped
    and an unclipped step."""
    from gpt2core.training.grads import fused_grad_scale, global_grad_norm, unscale_and_clip_

    for max_norm in (0.05, 1e3):
        torch.manual_seed(0)
        a = GPT(GPTConfig.padded(300, 128, n_positions=16, n_layer=2, n_head=2, n_embd=16))
        b = GPT(GPTConfig.padded(300, 128, n_positions=16, n_layer=2, n_head=2, n_embd=16))
        b.load_state_dict(a.state_dict())
        # eps 1: the update grows with the gradient (Adam's usual update would hide a wrong scale)
        opts = [torch.optim.AdamW(param_groups(m, 0.01), lr=1e-2, eps=1.0, fused=True) for m in (a, b)]
        x = torch.randint(0, 300, (2, 16))
        for m in (a, b):
            m(x).logsumexp(-1).mean().backward()
        norm = global_grad_norm(a.parameters())
        unscale_and_clip_(list(a.parameters()), norm, 1.0, max_norm)
        opts[0].step()
        opts[1].grad_scale = fused_grad_scale(global_grad_norm(b.parameters()), 1.0, max_norm, torch.device("cpu"))
        opts[1].step()
        assert (max_norm < norm.item()) == (max_norm == 0.05)  # one clipped step, one not
        for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=name)


def damage(step_dir: Path) -> None:
    with (step_dir / "model.safetensors").open("ab") as f:
        f.write(b"\0")


def test_pruning_after_a_fallback_past_damaged_checkpoints_keeps_the_new_one(tmp_path: Path) -> None:
    """keep_last counts back from the checkpoint just written: newer damaged ones do not push it (and every
    intact one) out."""
    first = make_trainer(tmp_path, iters=40, save_interval=10)
    first.start()
    steps_done = [first.iteration() for _ in range(30)]
    first.metrics.close()
    assert len(steps_done) == 30
    root = first.paths.checkpoints
    for step in (20, 30):
        damage(ckpt.step_dir(root, step))
    again = make_trainer(tmp_path, iters=40, save_interval=10, keep_last=1)
    assert again.start() == 10
    for _ in range(10):
        again.iteration()  # saves step 20 over the damaged one, then prunes
    again.metrics.close()
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_0000020", "step_0000030"]
    resumed = make_trainer(tmp_path, iters=40, save_interval=10, keep_last=1)
    assert resumed.start() == 20  # past the damaged 30, to the intact one just written
    resumed.metrics.close()


def test_a_run_that_dies_writing_its_outputs_resumes_at_the_end_instead_of_retraining(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finished marker is written last: a run killed before it (here: done.json cannot be written) is
    not mistaken for a finished one, which a rerun would train again from step 0 after deleting its
    checkpoints."""
    import gpt2core.training.trainer as train_module

    trainer = make_trainer(tmp_path, iters=10, save_interval=5)
    real_write = train_module.write_text_atomic

    def failing_write(path: Path, text: str) -> None:
        if Path(path) == trainer.paths.done:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(train_module, "write_text_atomic", failing_write)
    with pytest.raises(OSError, match="disk full"):
        trainer.run()
    monkeypatch.undo()
    assert not (trainer.paths.checkpoints / ckpt.FINISHED).exists()
    rerun = make_trainer(tmp_path, iters=10, save_interval=5)
    summary = rerun.run()
    assert summary["iterations"] == 10 and rerun.last_saved == 10  # resumed at the end: nothing retrained
    assert [p.name for p in ckpt.list_checkpoints(rerun.paths.checkpoints)] == ["step_0000005", "step_0000010"]
    assert [m["step"] for m in read_metrics(rerun.paths.metrics)] == list(range(1, 11))
    assert (rerun.paths.checkpoints / ckpt.FINISHED).exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"seq_len": 16}}, "made with model.seq_len 32, the config asks for 16"),
    ({"data_seed": 999}, "made with data.seed 1234, the config asks for 999"),
])
def test_resuming_with_another_seq_len_or_data_seed_is_a_clear_error(tmp_path: Path, change: dict,
                                                                       message: str) -> None:
    """Both decide which windows the data loader reads: a resume under another one would silently train on
    other batches than the run it continues."""
    trainer = make_trainer(tmp_path)
    trainer.start()
    steps(trainer, 2)
    saved = trainer.save()
    trainer.metrics.close()
    other = make_trainer(tmp_path, **change)
    with pytest.raises(WikiGPTError, match=f"{saved}: {message}; remove .* to train from scratch"):
        other.start()


def test_a_finished_run_is_kept_when_only_keys_that_cannot_change_its_weights_changed(tmp_path: Path) -> None:
    """Snakemake reruns train after any train param changes; for log_interval, keep_last, threads, ... the
    finished run is still this config's result: kept (no step runs), outputs rewritten, keep_last applied."""
    first = make_trainer(tmp_path, iters=10, save_interval=5)
    first.run()
    root = first.paths.checkpoints
    weights = (ckpt.step_dir(root, 10) / "model.safetensors").read_bytes()
    metrics = first.paths.metrics.read_text()
    first.paths.done.unlink()
    again = make_trainer(tmp_path, iters=10, save_interval=5, log_interval=3, keep_last=1, threads=1)
    launched = []
    again._launch = lambda *a: launched.append(a)  # no step may run
    summary = again.run()
    assert launched == [] and summary["iterations"] == 10 and again.paths.done.exists()
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_0000010"]
    assert (ckpt.step_dir(root, 10) / "model.safetensors").read_bytes() == weights
    assert again.paths.metrics.read_text() == metrics
    assert (root / ckpt.FINISHED).exists()


@pytest.mark.parametrize("change", ["unchanged (--forcerun)", "lr", "other data"])
def test_a_finished_run_is_trained_again_when_its_weights_could_differ(tmp_path: Path, change: str) -> None:
    first = make_trainer(tmp_path, iters=10, save_interval=5)
    first.run()
    over: dict = {"lr": 1e-3} if change == "lr" else {}
    if change == "other data":
        write_manifest(tmp_path, shards=3)  # the same documents in other shards: other manifest bytes
        over = {"log_interval": 3}  # a key that alone would keep the run
    if change == "unchanged (--forcerun)":  # what the workflow's onstart writes for --forcerun train
        retrain.set_request(first.paths.checkpoints, True)
    again = make_trainer(tmp_path, iters=10, save_interval=5, **over)
    assert again.start() == 0
    assert ckpt.list_checkpoints(again.paths.checkpoints) == []
    assert not retrain.requested(again.paths.checkpoints)  # the note is for one start only
    again.metrics.close()


def test_a_finished_run_with_the_same_config_is_kept_unless_train_is_forced(tmp_path: Path) -> None:
    """A plain rerun (Snakemake killed while its trainer ran on and finished, or the outputs deleted) keeps
    the finished run: no step runs, the outputs are rewritten."""
    first = make_trainer(tmp_path, iters=10, save_interval=5)
    first.run()
    metrics = first.paths.metrics.read_text()
    first.paths.done.unlink()
    first.paths.metrics.unlink()
    again = make_trainer(tmp_path, iters=10, save_interval=5)
    launched = []
    again._launch = lambda *a: launched.append(a)  # no step may run
    assert again.run()["iterations"] == 10 and launched == []
    assert again.paths.metrics.read_text() == metrics and again.paths.done.exists()


def test_each_step_is_timed_by_its_own_work_when_the_next_one_was_queued_ahead(tmp_path: Path) -> None:
    """On CPU a launch runs the step itself, so queueing step i + 1 before reading step i must not charge both
    to i and nothing to i + 1 (which made every evaluated, saved and last step log ~0 s and 1000x tokens/s)."""
    import time as time_module

    trainer = make_trainer(tmp_path, iters=6, eval_interval=3, save_interval=4)
    trainer.raw_model.ln_f.register_forward_hook(lambda *_: time_module.sleep(0.05))  # every forward >= 50 ms
    trainer.run()
    train_lines = read_metrics(trainer.paths.metrics)
    # no step logs less than its own 50 ms (no upper bound: a loaded CI machine stretched one to 0.5 s)
    assert all(m["step_time_s"] >= 0.05 for m in train_lines), [m["step_time_s"] for m in train_lines]


def saved_activation_bytes(model: GPT, idx: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward of one bf16-autocast forward (what a step writes and reads back)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
    return total


def test_half_residual_keeps_the_stream_in_bf16_with_less_to_save_and_the_same_loss() -> None:
    """train.half_residual: every block's output (the residual stream) in the autocast dtype, as the reference's
    16-bit weights keep it; autograd saves fewer bytes for the backward; the loss and gradients stay those of
    the fp32 stream to bf16 rounding."""
    torch.manual_seed(0)
    B, T, C, L = 4, 64, 64, 3
    model = GPT(GPTConfig.padded(1000, n_layer=L, n_head=2, n_embd=C, n_positions=T))
    idx = torch.randint(0, 1000, (B, T + 1))
    seen: list[torch.dtype] = []
    for block in model.h:
        block.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    results = {}
    for half in (False, True):
        model.residual_dtype = torch.bfloat16 if half else None
        seen.clear()
        model.zero_grad()
        saved = saved_activation_bytes(model, idx)
        results[half] = (saved, list(seen), model.h[0].attn.c_attn.weight.grad.clone())
    (fp32_saved, fp32_seen, fp32_grad), (half_saved, half_seen, half_grad) = results[False], results[True]
    assert fp32_seen == [torch.float32] * 3 and half_seen == [torch.bfloat16] * 3
    # every LayerNorm (2 a block and ln_f) keeps its input, the stream, in 2 bytes an element instead of 4
    assert fp32_saved - half_saved == (2 * L + 1) * B * T * C * 2, (fp32_saved, half_saved)
    assert torch.allclose(half_grad, fp32_grad, rtol=0.05, atol=1e-4)


def test_half_residual_run_follows_the_fp32_residual_run(tmp_path: Path) -> None:
    """The flag reaches the model through the trainer, and a bf16 run with it trains like one without."""
    plain = make_trainer(tmp_path, "plain", {"dropout": 0.0}, iters=8, precision="bf16")
    half = make_trainer(tmp_path, "half", {"dropout": 0.0}, iters=8, precision="bf16", half_residual=True)
    assert plain.raw_model.residual_dtype is None and half.raw_model.residual_dtype == torch.bfloat16
    for a, b in zip(steps(plain, 8), steps(half, 8), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=0.02), (a["loss"], b["loss"])


def test_half_residual_needs_a_16_bit_precision(tmp_path: Path) -> None:
    with pytest.raises(WikiGPTError, match="train.half_residual .* needs precision fp16 or bf16, not fp32"):
        make_trainer(tmp_path, half_residual=True)


def test_the_entry_point_lists_its_arguments() -> None:
    """README (The library on its own) points a direct launch at `python -m gpt2core.train --help`."""
    proc = subprocess.run([sys.executable, "-m", "gpt2core.train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for arg in ("--manifest", "--model", "--train", "--data-seed", "--checkpoints", "--done", "--metrics"):
        assert arg in proc.stdout
