"""train.loss_chunk: the output layer and cross-entropy by chunks give the plain loss and its gradients,
through the model and through the trainer (eager and compiled), and the combinations it cannot serve are
config errors."""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_train import make_trainer, steps
from test_train_helpers import full_config, typed

from gpt2core.config import check_parallel_config
from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig, lm_loss
from gpt2core.training.linear_cross_entropy import linear_cross_entropy
from gpt2core.training.metrics import read_metrics


def tiny_model(vocab: int = 300) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.padded(vocab, 128, n_layer=2, n_head=2, n_embd=32, n_positions=64))  # 384 rows


def grads(model: GPT) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def batch(vocab: int = 300, masked: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, vocab, (3, 17), generator=g), torch.randint(0, vocab, (3, 17), generator=g)
    mask = (torch.rand(3, 17, generator=g) > 0.3).float() if masked else None
    return x, y, mask


@pytest.mark.parametrize("chunk", [1, 5, 51, 1000])
@pytest.mark.parametrize("masked", [True, False])
def test_chunked_loss_and_gradients_equal_the_full_logits_loss(chunk: int, masked: bool) -> None:
    """fp32: loss and every parameter's gradient (the padded rows of the tied embedding get none) equal
    lm_loss over the -inf-padded logits, for chunks that do and do not divide the 51 positions."""
    model = tiny_model()
    x, y, mask = batch(masked=masked)
    ref = lm_loss(model(x), y, mask)
    (2.5 * ref).backward()  # a non-unit incoming gradient, as a loss scale or accumulation divisor gives
    want = grads(model)
    head = functools.partial(linear_cross_entropy, targets=y, mask=mask, chunk=chunk, compute_dtype=torch.float32)
    got_loss = model(x, head=head)
    (2.5 * got_loss).backward()
    got = grads(model)
    assert got_loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for name, g in want.items():
        assert (got[name] - g).abs().max() <= 1e-5 * g.abs().max(), name  # fp32 summation order only
    assert got["wte.weight"][300:].abs().max() == 0  # padded ids: never in the loss


def test_without_gradients_it_only_computes_the_loss() -> None:
    model = tiny_model()
    x, y, mask = batch()
    with torch.no_grad():
        ref = lm_loss(model(x), y, mask)
        got = model(x, head=functools.partial(linear_cross_entropy, targets=y, mask=mask, chunk=7,
                                              compute_dtype=torch.float32))
    assert not got.requires_grad and got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_bf16_matches_the_autocast_loss_to_bf16_rounding() -> None:
    model = tiny_model()
    x, y, mask = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = lm_loss(model(x), y, mask)
    ref.backward()
    want = grads(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x, head=functools.partial(linear_cross_entropy, targets=y, mask=mask, chunk=8,
                                              compute_dtype=torch.bfloat16))
    got.backward()
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), rel=1e-3)
    for name, g in grads(model).items():
        assert (g - want[name]).abs().max() <= 0.02 * want[name].abs().max() + 1e-6, name


def test_fully_masked_batch_gives_zero_loss_and_zero_gradients() -> None:
    """As lm_loss: the count is clamped to 1, so an all-EOD batch is a zero loss, never a NaN."""
    model = tiny_model()
    x, y, _ = batch()
    loss = model(x, head=functools.partial(linear_cross_entropy, targets=y, mask=torch.zeros(3, 17), chunk=4,
                                           compute_dtype=torch.float32))
    loss.backward()
    assert loss.item() == 0.0 and all(p.grad.abs().max() == 0 for p in model.parameters())


def test_trainer_with_loss_chunk_trains_the_same_run(tmp_path: Path) -> None:
    """Same seed, fp32 CPU, through run(): the chunked run's loss lines, grad norms and valid losses (the
    no-gradient path) follow the plain run's to rounding."""
    runs = {}
    for name, extra in (("plain", {}), ("chunked", {"loss_chunk": 24})):
        trainer = make_trainer(tmp_path, name, iters=6, eval_interval=3, **extra)
        trainer.run()
        runs[name] = read_metrics(trainer.paths.metrics)
    for a, b in zip(runs["plain"], runs["chunked"], strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a["loss"], b["loss"])
        assert math.isclose(a["grad_norm"], b["grad_norm"], rel_tol=1e-4), (a["grad_norm"], b["grad_norm"])
        assert ("valid_loss" in a) == ("valid_loss" in b)
        if "valid_loss" in a:
            assert math.isclose(a["valid_loss"], b["valid_loss"], rel_tol=1e-5)
    assert sum("valid_loss" in m for m in runs["chunked"]) == 2


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
def test_compiled_loss_chunk_follows_the_eager_run(tmp_path: Path) -> None:
    """The chunk loop and the autograd Function trace into the one compiled graph of model + loss."""
    eager = steps(make_trainer(tmp_path, "eager", iters=4, loss_chunk=40), 4)
    trainer = make_trainer(tmp_path, "compiled", iters=4, loss_chunk=40, compile=True)
    assert isinstance(trainer.loss_fn, torch._dynamo.eval_frame.OptimizedModule)
    for a, b in zip(eager, steps(trainer, 4), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (a["loss"], b["loss"])


@pytest.mark.parametrize(("train", "message"), [
    ({"loss_chunk": 1024, "precision": "fp16"}, "train.loss_chunk works with precision bf16 or fp32, not fp16"),
    ({"loss_chunk": 1024, "tp": 2, "nproc_per_node": 2}, r"train.loss_chunk needs train.tp 1 \(got 2\)"),
])
def test_loss_chunk_with_fp16_or_tensor_parallelism_is_a_config_error(train: dict, message: str) -> None:
    config = full_config(model={"n_head": 4, "n_embd": 64}, train=train)
    with pytest.raises(WikiGPTError, match=message):
        check_parallel_config(*typed(config["model"], config["train"]))


def test_loss_chunk_has_no_schema_default_so_existing_configs_keep_their_params() -> None:
    """A default would change every run's `train` params and make Snakemake retrain finished runs."""
    from snakemake.utils import validate
    from test_train_helpers import SCHEMA

    assert "loss_chunk" not in full_config()["train"]
    config = full_config()
    config["train"]["loss_chunk"] = -1
    with pytest.raises(Exception, match="loss_chunk"):
        validate(config, str(SCHEMA))
