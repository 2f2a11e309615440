"""GPU training throughput of the real trainer (`gpt2core.training.trainer.Trainer.iterations`, as `rule train` runs it) for
GPT-2 small, with MFU against the device's dense 16-bit peak (gpt2core.training.flops), plus a plain
nanoGPT-style loop on the same model as the anchor for "the parallel-capable trainer costs nothing at tp=1".

Default rows (in this order, so a run cut short still reports the headline):
  trainer seq1024 b16 bf16 compile  (goal: >= 45% MFU on an H100; nanoGPT 37% on A100, llm.c ~40% on H100)
  plain loop, same config            (anchor: trainer / plain >= 0.97x)
  trainer bf16 eager, fp16 compile, the reference's config (seq 512, batch 8, activation checkpointing, fp16)
  eager and compiled, batch 32.
Extra rows, run only when `--only` names them: other torch.compile modes (max-autotune searches matmul
kernels and takes minutes to compile; reduce-overhead adds CUDA graphs), flash attention instead of cuDNN,
`loss-chunk` (train.loss_chunk: the output layer and loss by chunks, no (B, T, V) logits), `cdt` (Inductor's
coordinate-descent tuning of its own Triton kernels' launch configs: the memory-bound half of the step), and
`half-residual` (train.half_residual: the residual stream in bf16, halving what LayerNorm and the adds move),
and `accum8` (8 micro-batches an optimizer step: the fused AdamW and the step's host work once per 8; nanoGPT's
37% is measured that way, with 40). The GPU levers (docs/gpu-levers.md), each a row on top of the current best
at the default compile mode (`trainer seq1024 b32 bf16 compile half-residual`, their anchor in the same run):
`float8` (train.float8 rowwise), `cuda-graph` (train.cuda_graph), `liger` (train.liger_loss; the
`loss-chunk4096` row beside it is ours), `fused-add-norm` (train.fused_add_norm), and all that combine; and the
1-GPU preset's own row (`b32 accum16 ... max-autotune half-residual`: configs/gpt2-small-1gpu.yaml).
Each row's tokens/s is the median step over `--steps` steps after warm-up (and compilation).

    python benchmarks/bench_gpu.py                 # on a GPU machine (benchmarks/gpu.sh wraps it)
    python benchmarks/bench_gpu.py --only max-autotune,reduce-overhead   # the extra rows
    python benchmarks/bench_gpu.py --smoke         # a tiny CPU run that only checks the script works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from gpt2core.config import ModelConfig, TrainConfig
from gpt2core.model import GPT
from gpt2core.training.build import gpt_config
from gpt2core.training.flops import flops_per_token, peak_flops
from gpt2core.training.optimizer import param_groups
from gpt2core.training.step import CausalLMLoss, compile_options
from gpt2core.training.trainer import RunPaths, Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_train_helpers import write_manifest  # noqa: E402

VOCAB, EOD = 50257, 50256


def schema_defaults(section: str) -> dict:
    """config['model'] / config['train'] with every schema default (the trainer expects all keys)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
    props = schema["properties"][section]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def synthetic_manifest(root: Path, tokens: int, seed: int = 0) -> Path:
    """Random GPT-2 ids in 1,024-token documents, written by the trainer tests' manifest writer."""
    rng = np.random.default_rng(seed)
    docs = rng.integers(0, EOD, (tokens // 1024 + 64, 1023)).tolist()
    return write_manifest(root, VOCAB, EOD, docs={"train": docs[64:], "valid": docs[:64]}, shards=1)


def model_section(seq: int, smoke: bool) -> dict:
    m = schema_defaults("model")
    m.update(n_layer=12, n_head=12, n_embd=768, seq_len=seq, n_positions=max(seq, 1024), dropout=0.0,
             vocab_multiple=128)
    if smoke:
        m.update(n_layer=2, n_head=2, n_embd=32, n_positions=seq)
    return m


def trainer_row(manifest: Path, tmp: Path, seq: int, mb: int, precision: str, compiled: bool | str, ckpt: bool,
                steps: int, warmup: int, smoke: bool, profile: bool = False, loss_chunk: int = 0,
                half_residual: bool = False, grad_accum: int = 1, levers: dict | None = None) -> dict:
    train = schema_defaults("train")
    train.update(micro_batch=mb, grad_accum=grad_accum, precision=precision, compile=compiled,
                 activation_checkpointing=ckpt, lr=1.5e-4, weight_decay=0.01, grad_clip=1.0,
                 iters=10**6, warmup=0.01, eval_interval=10**9, save_interval=10**9,
                 device="cpu" if smoke else "cuda", tp=1, dp=1, loss_chunk=loss_chunk, half_residual=half_residual,
                 **(levers or {}))
    paths = RunPaths(manifest, tmp / "ckpt", tmp / "done.json", tmp / "metrics.jsonl")
    trainer = Trainer(ModelConfig.from_dict(model_section(seq, smoke)), TrainConfig.from_dict(train), 1234, paths)
    trainer.loss_fn.train()
    records = trainer.iterations()  # as run() drives it: the next step is queued before this one is read
    times = [next(records)["step_time_s"] for _ in range(warmup + steps)][warmup:]
    dt = statistics.median(times)
    if profile:
        print_profile(lambda: next(records), dt, smoke)
    return {"tokens_per_s": mb * grad_accum * seq / dt, "step_s": dt, "cfg": trainer.cfg, "device": trainer.device,
            "levers": levers_in_effect(trainer)}


def levers_in_effect(trainer: Trainer) -> list[str]:
    """The speed levers the timed steps really ran with, read off the trainer (not its config): a row whose
    lever did not take (a CUDA graph never captured, no module swapped) says so in gpu_bench.jsonl."""
    loss = getattr(trainer.loss_fn, "_orig_mod", trainer.loss_fn)  # under torch.compile
    found = {"fused_add_norm": trainer.raw_model.trunk is not None,
             "float8": any(type(m).__name__ == "Float8Linear" for m in trainer.raw_model.modules()),
             "liger_loss": loss.liger is not None, "loss_chunk": bool(loss.loss_chunk),
             "half_residual": trainer.raw_model.residual_dtype is not None,
             "cuda_graph": trainer.step_graph is not None and trainer.step_graph.graph is not None}
    return [name for name, on in found.items() if on]


# Where a kernel's time goes, by its name (first match wins). Attention comes before matmul: cuDNN's flash
# kernels are wgmma kernels too; Inductor's fused Triton kernels are named after the ops they fuse.
CATEGORIES = [
    ("attention", re.compile(r"flash|fmha|sdpa|attention")),
    ("cross-entropy", re.compile(r"log_softmax|nll_loss|cross_entropy")),
    ("optimizer", re.compile(r"adam|multi_tensor_apply|_foreach_")),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|wgmma|^aten::(mm|addmm|bmm|matmul)$")),
    ("layernorm", re.compile(r"layer_norm")),
    ("gelu", re.compile(r"gelu")),
    ("embedding", re.compile(r"embedding|index_put|index_select|scatter|gather")),
    ("copy/cast/fill", re.compile(r"copy|cast|fill|memset|memcpy|^aten::cat$")),
]


def category(kernel: str) -> str:
    name = kernel.lower()
    return next((label for label, pattern in CATEGORIES if pattern.search(name)), "other")


def breakdown(kernels: list[tuple[str, float]], step_s: float, steps: int) -> list[tuple[str, float, float]]:
    """(category, ms per step, share of the unprofiled step) from (kernel name, self time in us) over `steps`
    profiled steps; what the kernels leave of the step is the device idle (waiting on the host)."""
    per: dict[str, float] = {}
    for name, us in kernels:
        label = category(name)
        per[label] = per.get(label, 0.0) + us / 1000 / steps
    rows = sorted(per.items(), key=lambda kv: -kv[1])
    rows.append(("idle (host-bound gaps)", max(0.0, step_s * 1000 - sum(per.values()))))
    return [(label, ms, ms / (step_s * 1000)) for label, ms in rows]


def print_profile(step: Callable[[], object], step_s: float, smoke: bool, steps: int = 3) -> None:
    """Profile `steps` trainer steps: the 25 largest kernels, then their time by category against the
    unprofiled median step (on CPU, the smoke run, its aten ops stand in for kernels)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if not smoke else [])
    with torch_profile(activities=acts) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    key = "self_cpu_time_total" if smoke else "self_device_time_total"
    print(events.table(sort_by=key, row_limit=25, max_name_column_width=70), flush=True)
    if smoke:
        kernels = [(e.key, e.self_cpu_time_total) for e in events if e.key.startswith("aten::")]
    else:  # kernels only: the ops that launched them and the ranges around them (Optimizer.step#..., compiled
        # regions) carry the same device time again, which is why the table's "Self CUDA time total" overcounts
        kernels = [(e.key, e.self_device_time_total) for e in events if e.device_type == DeviceType.CUDA
                   and not getattr(e, "is_user_annotation", False) and "#" not in e.key]
    print(f"where a step's device time goes ({steps} profiled steps, against the unprofiled median step of "
          f"{step_s * 1000:.1f} ms):", flush=True)
    for label, ms, share in breakdown(kernels, step_s, steps):
        print(f"  {label:24s} {ms:8.2f} ms  {100 * share:5.1f}%", flush=True)


def loss_chunk_of(name: str, smoke: bool) -> int:
    """train.loss_chunk from a row name's "loss-chunkN" (0: the plain loss); the smoke run uses 16."""
    found = re.search(r"loss-chunk(\d+)", name)
    return 0 if not found else 16 if smoke else int(found.group(1))


def select_rows(rows: list[tuple], only: str) -> list[tuple]:
    """The rows whose name contains one of `only`'s comma-separated keys, in the order of the keys (so the
    rows a short device budget must reach are named first), each row once."""
    picked: list[tuple] = []
    for key in (k.strip() for k in only.split(",")):
        picked += [r for r in rows if key and key in r[0] and r not in picked]
    return picked


# a row name's word -> the train keys of the GPU lever it turns on (docs/gpu-levers.md)
LEVER_WORDS = {"fused-add-norm": {"fused_add_norm": True}, "liger": {"liger_loss": True},
               "float8": {"float8": "rowwise"}, "float8-tensorwise": {"float8": "tensorwise"},
               "cuda-graph": {"cuda_graph": True}}


def row_options(name: str, smoke: bool) -> dict:
    """The trainer_row options a row name asks for: "loss-chunkN", "half-residual", "accumN" (N micro-batches
    an optimizer step, as nanoGPT's own MFU figure is measured: its 37% runs 40 of them) and the lever words."""
    accum = re.search(r"accum(\d+)", name)
    levers = {key: value for word in name.split() for key, value in LEVER_WORDS.get(word, {}).items()}
    return {"loss_chunk": loss_chunk_of(name, smoke), "half_residual": "half-residual" in name,
            "grad_accum": int(accum.group(1)) if accum else 1, "levers": levers}


def inductor_options(name: str) -> contextlib.AbstractContextManager:
    """Inductor settings a row name asks for: " cdt" turns on coordinate-descent tuning of the launch configs
    of Inductor's own kernels (LayerNorm, GELU, cross-entropy: the memory-bound half of the step)."""
    if " cdt" in name:
        return torch._inductor.config.patch(coordinate_descent_tuning=True)
    return contextlib.nullcontext()


def plain_row(seq: int, mb: int, precision: str, compiled: bool | str, steps: int, warmup: int,
              smoke: bool) -> dict:
    """nanoGPT's loop: model + loss (compiled), backward, clip_grad_norm_, fused AdamW; no syncs but one."""
    device = torch.device("cpu" if smoke else "cuda")
    cfg = gpt_config(ModelConfig.from_dict(model_section(seq, smoke)), VOCAB)
    torch.manual_seed(1234)
    model = GPT(cfg).to(device)
    loss_fn = CausalLMLoss(model, precision, device)
    compile_kw = compile_options(compiled)
    loss_fn = torch.compile(loss_fn, dynamic=False, **compile_kw) if compile_kw is not None else loss_fn
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1.5e-4, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    g = torch.Generator(device="cpu").manual_seed(0)
    data = [torch.randint(0, EOD, (mb, seq + 1), generator=g).to(device) for _ in range(8)]
    mask = torch.ones(mb, seq, device=device)

    def step(i: int) -> None:
        tok = data[i % len(data)]
        scaler.scale(loss_fn(tok[:, :-1], tok[:, 1:], mask)).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    dt = (time.perf_counter() - t0) / steps
    return {"tokens_per_s": mb * seq / dt, "step_s": dt, "cfg": cfg, "device": device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run: checks the script, measures nothing")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=400.0, help="skip rows that would start after this")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only the rows that match, in "
                    "the order of the substrings")
    ap.add_argument("--repeat", type=int, default=1, help="run the rows N times, interleaved; best of N")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed rows, profile the first trainer row: its kernels, and its step by category")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="gpu_bench.jsonl here")
    args = ap.parse_args()
    smoke = args.smoke
    if not smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    steps, warmup = (2, 1) if smoke else (args.steps, args.warmup)
    big = (32, 2) if smoke else (1024, 16)
    ref = (32, 2) if smoke else (512, 8)
    b32 = (big[0], 2 * big[1])
    # (name, kind, seq, micro_batch, precision, train.compile, activation checkpointing)
    rows = [("trainer seq1024 b16 bf16 compile", "trainer", *big, "bf16", True, False),
            ("plain   seq1024 b16 bf16 compile", "plain", *big, "bf16", True, False),
            ("trainer seq1024 b16 bf16 eager", "trainer", *big, "bf16", False, False),
            ("plain   seq1024 b16 bf16 eager", "plain", *big, "bf16", False, False),
            ("trainer seq1024 b16 fp16 compile", "trainer", *big, "fp16", True, False),
            ("reference seq512 b8 ckpt fp16 eager", "trainer", *ref, "fp16", False, True),
            ("reference seq512 b8 ckpt fp16 compile", "trainer", *ref, "fp16", True, True),
            ("trainer seq1024 b32 bf16 compile", "trainer", *b32, "bf16", True, False)]
    extra = [("trainer seq1024 b16 bf16 compile flash-sdpa", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b16 bf16 max-autotune", "trainer", *big, "bf16", "max-autotune", False),
             ("plain   seq1024 b16 bf16 max-autotune", "plain", *big, "bf16", "max-autotune", False),
             ("trainer seq1024 b32 bf16 max-autotune", "trainer", *b32, "bf16", "max-autotune", False),
             ("trainer seq1024 b16 bf16 reduce-overhead", "trainer", *big, "bf16", "reduce-overhead", False),
             ("reference seq512 b8 ckpt fp16 reduce-overhead", "trainer", *ref, "fp16", "reduce-overhead", True),
             ("trainer seq1024 b16 bf16 eager loss-chunk2048", "trainer", *big, "bf16", False, False),
             ("trainer seq1024 b16 bf16 compile loss-chunk2048", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b16 bf16 compile loss-chunk4096", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile loss-chunk4096", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b16 bf16 compile cdt", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b32 bf16 max-autotune cdt", "trainer", *b32, "bf16", "max-autotune", False),
             ("trainer seq1024 b16 bf16 eager half-residual", "trainer", *big, "bf16", False, False),
             ("trainer seq1024 b16 bf16 compile half-residual", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual", "trainer", *b32, "bf16", True, False),
             # the GPU levers on top of the row above (`--only "trainer seq1024 b32 bf16 compile half-residual"`
             # runs it and then these, in this order: by expected gain, so a budget cut drops the least likely)
             ("trainer seq1024 b32 bf16 compile half-residual float8", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual cuda-graph", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual liger", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual loss-chunk4096", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual fused-add-norm", "trainer", *b32, "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual float8 cuda-graph fused-add-norm", "trainer", *b32,
              "bf16", True, False),
             ("trainer seq1024 b32 bf16 compile half-residual float8-tensorwise", "trainer", *b32, "bf16", True,
              False),
             ("trainer seq1024 b16 bf16 eager fused-add-norm", "trainer", *big, "bf16", False, False),
             # configs/gpt2-small-1gpu.yaml: 524,288 tokens a step, max-autotune (minutes of compiling)
             ("trainer seq1024 b32 accum16 bf16 max-autotune half-residual", "trainer", *b32, "bf16", "max-autotune",
              False),
             ("trainer seq1024 b32 bf16 max-autotune half-residual", "trainer", *b32, "bf16", "max-autotune", False),
             ("trainer seq1024 b16 accum8 bf16 eager", "trainer", *big, "bf16", False, False),
             ("trainer seq1024 b16 accum8 bf16 compile", "trainer", *big, "bf16", True, False),
             ("trainer seq1024 b16 accum8 bf16 compile half-residual", "trainer", *big, "bf16", True, False)]
    if args.only:
        rows = select_rows(rows + extra, args.only)
    if smoke:
        rows = [r for r in rows if r[5] is False]
    rows = rows * args.repeat  # no C++ compiler needed for the smoke run
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "gpu_bench.jsonl").open("a", encoding="utf-8")
    t_all = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        manifest = synthetic_manifest(tmp, 1 << 22)
        for i, (name, kind, seq, mb, precision, compiled, ckpt) in enumerate(rows):
            if time.perf_counter() - t_all > args.budget_s:
                print(f"{name:40s} skipped (over --budget-s {args.budget_s:.0f})", flush=True)
                continue
            t0 = time.perf_counter()
            torch._dynamo.reset()  # each row compiles its own static-shape graph (the disk cache still helps)
            if not smoke:  # torch's default attention backend on Hopper is cuDNN; the last row tries flash
                torch.backends.cuda.enable_cudnn_sdp("flash-sdpa" not in name)
            with inductor_options(name):  # compilation happens inside the row's first steps
                if kind == "trainer":
                    r = trainer_row(manifest, tmp / f"run{i}", seq, mb, precision, compiled, ckpt, steps, warmup,
                                    smoke, **row_options(name, smoke))
                else:
                    r = plain_row(seq, mb, precision, compiled, steps, warmup, smoke)
            peak = peak_flops(r["device"], precision)
            mfu = flops_per_token(r["cfg"], seq) * r["tokens_per_s"] / peak if peak else None
            mem = torch.cuda.max_memory_allocated() / 2**30 if not smoke else 0.0
            if name not in results or r["tokens_per_s"] > results[name]["tokens_per_s"]:
                results[name] = {**r, "mfu": mfu}
            line = (f"{name:40s} {r['tokens_per_s']:10.0f} tok/s  MFU {100 * mfu if mfu else float('nan'):5.1f}%"
                    f"  step {r['step_s'] * 1000:7.1f} ms  mem {mem:5.1f} GiB  ({time.perf_counter() - t0:.0f} s"
                    " incl. warm-up/compile)" + (f"  levers: {','.join(r['levers'])}" if r.get("levers") else ""))
            print(line, flush=True)
            log.write(json.dumps({"row": name, "tokens_per_s": r["tokens_per_s"], "step_s": r["step_s"],
                                  "mfu": mfu, "mem_gib": mem, "torch": torch.__version__,
                                  "levers": r.get("levers", [])}) + "\n")
            log.flush()
            if not smoke:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        trainers = [r for r in rows if r[1] == "trainer"]
        if args.profile and trainers:  # last, so the profiler cannot slow the timed rows
            name, _, seq, mb, precision, compiled, ckpt = trainers[0]
            print(f"profile: {name}", flush=True)
            torch._dynamo.reset()
            if not smoke:
                torch.backends.cuda.enable_cudnn_sdp("flash-sdpa" not in name)
            with inductor_options(name):
                trainer_row(manifest, tmp / "profiled", seq, mb, precision, compiled, ckpt, steps, warmup, smoke,
                            profile=True, **row_options(name, smoke))
    for mode in ("compile", "eager", "max-autotune"):
        a, b = f"trainer seq1024 b16 bf16 {mode}", f"plain   seq1024 b16 bf16 {mode}"
        if a in results and b in results:
            print(f"trainer / plain loop ({mode}): {results[a]['tokens_per_s'] / results[b]['tokens_per_s']:.3f}x "
                  "(anchor: >= 0.97x)", flush=True)
    print(mfu_verdict(results, goal=0.50), flush=True)  # issue 18: past 45%, toward 50%
    print(f"total {time.perf_counter() - t_all:.0f} s", flush=True)


def mfu_verdict(results: dict[str, dict], goal: float = 0.45) -> str:
    """One line: the best MFU of the real trainer's rows at seq 1024 and whether it reaches the goal."""
    rows = {n: r["mfu"] for n, r in results.items() if n.startswith("trainer seq1024") and r.get("mfu")}
    if not rows:
        return "best trainer MFU: none measured (no GPU peak known for this device)"
    name = max(rows, key=rows.get)
    met = "met" if rows[name] >= goal else "NOT met"
    return f"best trainer MFU: {100 * rows[name]:.1f}% ({name.strip()}); goal >= {100 * goal:.0f}%: {met}"


if __name__ == "__main__":
    main()
