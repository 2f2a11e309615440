"""The GPU speed levers (train.liger_loss, fused_add_norm, cuda_graph, float8; docs/gpu-levers.md): each trains
like the plain path within a stated tolerance where it runs here, its config errors are one line before any
job, and a missing optional package is one line naming the key. The CUDA-only parts skip with their reason on
a machine without a GPU and run as they are on one (`pytest tests/test_gpu_levers.py` on the GPU machine)."""

from __future__ import annotations

import copy
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, tiny_config, write_config
from test_train import make_trainer, steps
from test_train_helpers import model_config, train_config

from gpt2core.config import check_levers
from gpt2core.errors import WikiGPTError
from gpt2core.model import GPT, GPTConfig, lm_loss
from gpt2core.training.fused_add_norm import AddLayerNorm, apply_fused_add_norm
from gpt2core.training.optional_packages import LIGER, TORCHAO, import_optional

LEVER_KEYS = ("liger_loss", "fused_add_norm", "cuda_graph", "float8")
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (on the lent one, gpu_loss_curves.py checks the same)")


def small_gpt(seed: int = 0, layers: int = 3, embd: int = 32) -> GPT:
    """A tiny GPT with LayerNorm weights moved off 1/0, so their gradients and the affine part are tested."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig.padded(300, n_positions=32, n_layer=layers, n_head=2, n_embd=embd))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def loss_and_grads(model: GPT, x: torch.Tensor, y: torch.Tensor,
                   dtype: torch.dtype | None) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = lm_loss(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def worst_rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(((a[n] - b[n]).norm() / b[n].norm()).item() for n in b)


# ---- fused residual add + LayerNorm -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype,half,loss_tol,grad_tol", [
    (None, False, 1e-6, 1e-5),  # fp32: the same math in another order
    (torch.bfloat16, False, 1e-4, 5e-3),  # bf16 autocast: the LayerNorm output rounds to bf16 one op earlier
    (torch.bfloat16, True, 1e-4, 4e-2),  # + train.half_residual: the stream itself is bf16
])
def test_fused_add_norm_gives_the_plain_loss_and_gradients(dtype, half, loss_tol, grad_tol) -> None:
    plain = small_gpt()
    fused = copy.deepcopy(plain)
    apply_fused_add_norm(fused)
    calls = []
    fused.h[0].ln_2.register_forward_hook(lambda *_: calls.append("module"))  # the fused path calls no LN module
    for m in (plain, fused):
        m.residual_dtype = torch.bfloat16 if half else None
    x, y = torch.randint(0, 300, (2, 4, 32))
    loss_p, grads_p = loss_and_grads(plain, x, y, dtype)
    loss_f, grads_f = loss_and_grads(fused, x, y, dtype)
    assert calls == [], "ln_2 ran as a module: the fused add + LayerNorm was not used"
    assert math.isclose(loss_f, loss_p, rel_tol=loss_tol), (loss_f, loss_p)
    assert worst_rel(grads_f, grads_p) < grad_tol, worst_rel(grads_f, grads_p)


def test_add_layer_norm_passes_the_residual_gradient_through() -> None:
    """The sum's own gradient (the residual stream's) and the LayerNorm's both reach x and y."""
    torch.manual_seed(1)
    x, y = torch.randn(3, 5, 16, requires_grad=True), torch.randn(3, 5, 16, requires_grad=True)
    norm = torch.nn.LayerNorm(16)
    s, h = AddLayerNorm.apply(x, y, norm.weight, norm.bias, norm.eps)
    gs, gh = torch.randn_like(s), torch.randn_like(h)
    torch.autograd.backward((s, h), (gs, gh))
    ref_x, ref_y = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    s_ref = ref_x + ref_y
    torch.autograd.backward((s_ref, norm(s_ref)), (gs, gh))
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-5) and torch.allclose(y.grad, ref_y.grad, atol=1e-5)
    assert torch.allclose(h, norm(x + y), atol=1e-5)


def test_fused_add_norm_run_follows_the_plain_run(tmp_path: Path) -> None:
    """Through the trainer (the key reaches the model), fp32 on CPU: the same losses to 1e-5 over 6 steps."""
    plain = make_trainer(tmp_path, "plain", {"dropout": 0.0}, iters=6)
    fused = make_trainer(tmp_path, "fused", {"dropout": 0.0}, iters=6, fused_add_norm=True)
    assert plain.raw_model.trunk is None and fused.raw_model.trunk is not None
    for a, b in zip(steps(plain, 6), steps(fused, 6), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a["loss"], b["loss"])


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
def test_fused_add_norm_compiles_into_the_same_run(tmp_path: Path) -> None:
    """What the lever is for: torch.compile traces AddLayerNorm (no graph break to fall back on) and the
    compiled fused run follows the eager plain run, fp32 on CPU, to 1e-5 over 4 steps."""
    plain = make_trainer(tmp_path, "plain", {"dropout": 0.0}, iters=4)
    fused = make_trainer(tmp_path, "fused", {"dropout": 0.0}, iters=4, fused_add_norm=True, compile=True)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        fused_steps = steps(fused, 4)
    for a, b in zip(steps(plain, 4), fused_steps, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a["loss"], b["loss"])
    graph_breaks = torch._dynamo.utils.counters["graph_break"]
    assert not graph_breaks, dict(graph_breaks)


# ---- float8 (torchao) ------------------------------------------------------------------------------------
def test_float8_emulated_trains_like_bf16() -> None:
    """torchao's float8 training in its fp32 emulation (the same casts and scales as on an H100, the matmul
    emulated): the block linears are swapped, the loss is bf16's to 1e-3, every gradient within 15% (float8
    e4m3 keeps 3 mantissa bits) and measurably not bf16's (the casts ran), and 15 AdamW steps end within 3%."""
    pytest.importorskip("torchao.float8", reason="torchao not installed (pip install 'wikigpt[float8]')")
    from gpt2core.training.float8 import apply_float8

    plain = small_gpt(layers=2)
    fp8 = copy.deepcopy(plain)
    assert apply_float8(fp8, "rowwise", torch.device("cpu"), emulate=True) == 4 * 2  # qkv, proj, fc, proj a block
    assert type(fp8.lm_head) is torch.nn.Linear  # the tied output layer stays bf16
    assert fp8.h[0].mlp.c_fc.weight is not None and set(dict(fp8.named_parameters())) == \
        set(dict(plain.named_parameters()))  # same parameters, same names: checkpoints do not change
    x, y = torch.randint(0, 300, (2, 4, 32))
    loss_p, grads_p = loss_and_grads(plain, x, y, torch.bfloat16)
    loss_f, grads_f = loss_and_grads(fp8, x, y, torch.bfloat16)
    assert math.isclose(loss_f, loss_p, rel_tol=1e-3), (loss_f, loss_p)
    assert 1e-3 < worst_rel(grads_f, grads_p) < 0.15, worst_rel(grads_f, grads_p)
    finals = []
    for model in (plain, fp8):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(15):
            loss, _ = loss_and_grads(model, x, y, torch.bfloat16)
            opt.step()
        finals.append(loss)
    assert finals[0] < loss_p - 1.0 and math.isclose(finals[1], finals[0], rel_tol=0.03), (loss_p, finals)


@needs_cuda
def test_float8_run_follows_the_bf16_run_on_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 matmuls need an sm89+ GPU")
    pytest.importorskip("torchao.float8", reason="torchao not installed (pip install 'wikigpt[float8]')")
    model = {"dropout": 0.0, "n_embd": 64, "n_head": 2}
    plain = make_trainer(tmp_path, "plain", model, iters=8, precision="bf16", device="cuda")
    fp8 = make_trainer(tmp_path, "fp8", model, iters=8, precision="bf16", device="cuda", float8="rowwise")
    for a, b in zip(steps(plain, 8), steps(fp8, 8), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=0.03), (a["loss"], b["loss"])


# ---- Liger-Kernel's fused linear cross-entropy ------------------------------------------------------------
@needs_cuda
def test_liger_loss_run_follows_the_plain_run_on_a_gpu(tmp_path: Path) -> None:
    pytest.importorskip("liger_kernel", reason="liger-kernel not installed (pip install 'wikigpt[liger]')")
    plain = make_trainer(tmp_path, "plain", {"dropout": 0.0}, iters=6, precision="bf16", device="cuda")
    liger = make_trainer(tmp_path, "liger", {"dropout": 0.0}, iters=6, precision="bf16", device="cuda",
                         liger_loss=True)
    for a, b in zip(steps(plain, 6), steps(liger, 6), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=0.01), (a["loss"], b["loss"])
        assert math.isclose(a["grad_norm"], b["grad_norm"], rel_tol=0.05), (a["grad_norm"], b["grad_norm"])


def test_liger_head_counts_the_loss_as_lm_loss_does() -> None:
    """What we hand Liger (masked positions as its ignore_index, the real vocabulary's rows of the output weight,
    the hidden states in the compute dtype) gives lm_loss's masked mean and gradients, with torch's cross-entropy
    standing in for Liger's kernels, which compute it and cannot run without CUDA."""
    from gpt2core.training.liger_loss import LigerLoss

    def torch_flce(h, w, t, ignore_index, reduction, accum_dtype):
        return torch.nn.functional.cross_entropy((h @ w.T).float(), t, ignore_index=ignore_index,
                                                 reduction=reduction)

    model = small_gpt()
    x, y = torch.randint(0, 300, (2, 4, 32))
    mask = (torch.rand(4, 32) > 0.3).float()
    ref = lm_loss(model(x), y, mask)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = model(x, head=LigerLoss(torch.float32, torch_flce).head(y, mask))
    loss.backward()
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-6)
    assert worst_rel({n: p.grad for n, p in model.named_parameters()}, ref_grads) < 1e-5


def test_liger_loss_on_cpu_is_a_config_error(tmp_path: Path) -> None:
    """Liger's Triton kernels need CUDA: a CPU run stops in one line before building anything."""
    with pytest.raises(WikiGPTError, match=r"train.liger_loss needs a CUDA device .*this run is on cpu"):
        make_trainer(tmp_path, precision="bf16", device="cpu", liger_loss=True)


# ---- the whole step as one CUDA graph --------------------------------------------------------------------
@needs_cuda
def test_cuda_graph_run_follows_the_plain_run_on_a_gpu(tmp_path: Path) -> None:
    """The first 3 steps run eagerly, the 4th is captured and every later one replayed: the losses follow the
    plain run's step for step (the same kernels; bf16 autocast, so not bitwise)."""
    plain = make_trainer(tmp_path, "plain", {"dropout": 0.0}, iters=8, precision="bf16", device="cuda")
    graph = make_trainer(tmp_path, "graph", {"dropout": 0.0}, iters=8, precision="bf16", device="cuda",
                         cuda_graph=True)
    for a, b in zip(steps(plain, 8), steps(graph, 8), strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-3), (a["loss"], b["loss"])
    assert graph.step_graph.graph is not None


# ---- config checks and optional packages -----------------------------------------------------------------
def test_lever_keys_have_no_schema_default() -> None:
    """A default would add the key to every run's train params and retrain finished runs."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
    train = schema["properties"]["train"]["properties"]
    assert all(key in train and "default" not in train[key] for key in LEVER_KEYS)


@pytest.mark.parametrize("train,message", [
    ({"liger_loss": True, "loss_chunk": 1024}, "train.liger_loss and train.loss_chunk are two fused"),
    ({"liger_loss": True, "tp": 2}, "train.liger_loss needs train.tp 1"),
    ({"liger_loss": True, "precision": "fp16"}, "train.liger_loss works with precision bf16 or fp32, not fp16"),
    ({"liger_loss": True, "device": "cpu"}, "train.liger_loss needs a CUDA device"),
    ({"fused_add_norm": True, "tp": 2}, "train.fused_add_norm needs train.tp 1"),
    ({"fused_add_norm": True, "activation_checkpointing": True}, "train.fused_add_norm fuses across block"),
    ({"cuda_graph": True, "dp": 2}, "train.cuda_graph captures one process's whole step"),
    ({"cuda_graph": True, "precision": "fp16"}, "train.cuda_graph needs precision bf16 or fp32"),
    ({"cuda_graph": True, "compile": "reduce-overhead"}, "train.compile reduce-overhead makes CUDA graphs"),
    ({"cuda_graph": True, "compile": "max-autotune"}, "train.compile max-autotune makes CUDA graphs"),
    ({"cuda_graph": True, "liger_loss": True}, "train.cuda_graph cannot capture train.liger_loss"),
    ({"float8": "rowwise", "precision": "fp32"}, "train.float8 .* needs precision bf16, not fp32"),
    ({"float8": "rowwise", "tp": 2}, "train.float8 needs train.tp 1"),
    ({"float8": "rowwise", "device": "cpu"}, "train.float8 needs a CUDA device"),
])
def test_lever_combinations_that_cannot_work_are_one_line_errors(train: dict, message: str) -> None:
    base = {"precision": "bf16", "device": "auto", "tp": 1, "dp": 1, "compile": True}
    with pytest.raises(WikiGPTError, match=message) as err:
        check_levers(train_config(**{**base, **train}))
    assert "\n" not in str(err.value)


def test_a_one_process_lever_sees_the_processes_torchrun_started() -> None:
    """A direct torchrun launch of two processes with train.dp unset is a dp=2 run: cuda_graph is refused."""
    from gpt2core.config import check_run

    train = train_config(precision="bf16", device="cuda", cuda_graph=True)
    check_run(model_config(), train, world=1)
    with pytest.raises(WikiGPTError, match="train.cuda_graph captures one process's whole step"):
        check_run(model_config(), train, world=2)


def test_every_lever_together_is_a_valid_config() -> None:
    check_levers(train_config(precision="bf16", device="cuda", compile="max-autotune-no-cudagraphs",
                              fused_add_norm=True, cuda_graph=True, float8="rowwise"))
    check_levers(train_config(precision="bf16", device="auto", compile="max-autotune", liger_loss=True,
                              fused_add_norm=True, float8="tensorwise"))


def test_lever_errors_stop_the_workflow_before_any_job(tmp_path: Path) -> None:
    config = tiny_config()
    config["train"].update(precision="bf16", liger_loss=True, loss_chunk=64)
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "error: config: train.liger_loss and train.loss_chunk" in proc.stderr, \
        proc.stderr[-2000:]
    assert not (tmp_path / "data").exists()
    del config["train"]["loss_chunk"]
    config["train"]["fused_add_norm"] = True
    write_config(tmp_path, config)
    assert run_snakemake(tmp_path, "-n", check=False).returncode == 0


@pytest.mark.parametrize("key,package,extra", [("liger_loss", LIGER, "liger"), ("float8", TORCHAO, "float8")])
def test_a_missing_optional_package_is_one_line_naming_the_key(monkeypatch, key, package, extra) -> None:
    monkeypatch.setitem(sys.modules, package[0], None)  # what an environment without the package imports
    with pytest.raises(WikiGPTError) as err:
        import_optional(key, package)
    assert str(err.value) == (f"config: train.{key} needs the {package[1]} package: pip install "
                              f"'wikigpt[{extra}]' (or {package[1]}), or remove train.{key}")
