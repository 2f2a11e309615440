"""Evaluation speed: our WikiText-103 scoring (gpt2core.eval) vs `transformers` GPT2LMHeadModel forward on the
same windows, in the same run, same weights (our export loaded by transformers), same threads.

Anchor (issue 5): ours / transformers >= 1.0x on CPU. Tokens/s counts the window tokens run through the model
(windows x seq_len); both sides run exactly the same windows, so the ratio is the same for scored targets/s.

    python benchmarks/bench_eval.py                      # GPT-2 small shape, seq 256, CPU
    python benchmarks/bench_eval.py --device cuda --seq-len 1024 --windows 256 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))

from gpt2core.eval.runtime import read_text  # noqa: E402
from gpt2core.eval.scoring import forward_logits_at, gpt_logits_at  # noqa: E402
from gpt2core.eval.wikitext import prepare_tokens, score_tokens  # noqa: E402
from gpt2core.export.hf import export_hf, load_hf  # noqa: E402
from gpt2core.model import GPT, GPTConfig  # noqa: E402


def eval_tokens(seq_len: int, overlap: int, windows: int, tmp: Path) -> tuple[torch.Tensor, str]:
    """The first windows of WikiText-103 test with GPT-2 BPE (or the project's sample, or random ids)."""
    need = seq_len + 1 + (windows - 1) * overlap
    wiki, enc, bpe = (SHARED / "wikitext/wiki.test.tokens", SHARED / "gpt2_bpe/encoder.json",
                      SHARED / "gpt2_bpe/vocab.bpe")
    if wiki.exists() and enc.exists():
        from test_eval_support import gpt2_tokenizer_json

        tok = gpt2_tokenizer_json(enc, bpe, tmp / "tokenizer.json")
        _, ids = prepare_tokens(read_text(wiki), tok)
        return ids[:need], "WikiText-103 test, GPT-2 BPE"
    return torch.randint(0, 50257, (need,), generator=torch.Generator().manual_seed(0)), "random ids"


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--windows", type=int, default=33, help="windows scored per repeat (1 + a multiple of batch)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    transformers = __import__("transformers")

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tokens, source = eval_tokens(args.seq_len, args.overlap, args.windows, tmp)
        torch.manual_seed(0)
        cfg = GPTConfig.padded(50257, n_positions=max(args.seq_len, 1024), n_layer=args.n_layer,
                               n_head=args.n_head, n_embd=args.n_embd)
        export_hf(GPT(cfg), tmp / "model")
        ours_model = load_hf(tmp / "model", device=device)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp / "model").to(device).eval()

        ours = gpt_logits_at(ours_model)
        theirs = forward_logits_at(lambda idx: hf(idx).logits)

        def run(logits_at):
            return score_tokens(logits_at, tokens, args.seq_len, args.overlap, args.batch_size, 50257, device)

        # warm up both, and check they agree on the same windows
        a, b = run(ours), run(theirs)
        assert a.scored == b.scored and a.windows == b.windows
        rel = abs(a.loss_sum - b.loss_sum) / abs(b.loss_sum)
        times: dict[str, list[float]] = {"ours": [], "transformers": []}
        for _ in range(args.repeats):  # interleaved, so background load hits both alike
            times["ours"].append(timed(lambda: run(ours), device))
            times["transformers"].append(timed(lambda: run(theirs), device))
    window_tokens = a.windows * args.seq_len
    best = {k: min(v) for k, v in times.items()}
    tps = {k: window_tokens / v for k, v in best.items()}
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": args.threads, "model": f"{args.n_layer}L/{args.n_embd}d/{args.n_head}h, vocab 50257",
        "params": ours_model.num_parameters(), "seq_len": args.seq_len, "overlap": args.overlap,
        "windows": a.windows, "batch_size": args.batch_size, "tokens": source,
        "ours_tokens_per_s": round(tps["ours"], 1), "transformers_tokens_per_s": round(tps["transformers"], 1),
        "ratio_vs_transformers": round(tps["ours"] / tps["transformers"], 3),
        "loss_rel_diff": rel, "token_ppl_of_random_model": math.exp(a.loss_sum / a.scored),
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))
    print(f"eval tokens/s: ours {tps['ours']:.0f}, transformers GPT2LMHeadModel {tps['transformers']:.0f} "
          f"-> {tps['ours'] / tps['transformers']:.2f}x (anchor >= 1.0x on CPU)")


if __name__ == "__main__":
    main()
