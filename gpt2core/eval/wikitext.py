"""WikiText-103 perplexity exactly as the reference computes it (SPEC "WikiText-103 perplexity").

N_orig from the raw file split on spaces; the reference detokenizer; the detokenized text tokenized as one
stream; windows of seq_len + 1 every `overlap` tokens, each target scored once; L = summed natural-log loss;
token ppl = exp(L / (N_bpe - 1)), word-level ppl = exp(L / (N_orig - 1)) (the number papers quote).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from tqdm import tqdm

from gpt2core.errors import WikiGPTError
from gpt2core.eval.detok import count_original_words, wikitext_detokenize
from gpt2core.eval.encoder import load_encode
from gpt2core.eval.runtime import check_ids, load_model, log_stream, model_hashes, pick_device, read_text
from gpt2core.eval.scoring import LogitsAt, logits_at_for, target_losses
from gpt2core.eval.windows import WindowPlan
from gpt2core.export.hf import TOKENIZER_NAME
from gpt2core.fsutil import atomic_path, sha256_file


@dataclass(frozen=True)
class Score:
    loss_sum: float  # L, natural log, summed over scored targets (float64 accumulation)
    scored: int  # targets scored: N_bpe - 1
    windows: int


@torch.inference_mode()
def score_tokens(logits_at: LogitsAt, tokens: torch.Tensor, seq_len: int, overlap: int, batch_size: int,
                 vocab_size: int, device: torch.device | str = "cpu", progress: TextIO | None = None) -> Score:
    """Sum the loss of every target once over the reference's windows."""
    plan = WindowPlan(tokens.numel(), seq_len, overlap)
    total, scored = 0.0, 0
    bar = tqdm(total=plan.n_windows, desc="wikitext windows", unit="win", file=progress,
               disable=progress is None, mininterval=2.0)
    for ks in plan.batches(batch_size):
        inputs, positions, targets, mask = (t.to(device) for t in plan.batch(tokens, ks))
        losses = target_losses(logits_at(inputs, positions), targets, vocab_size)
        total += float(losses.masked_fill(~mask, 0.0).sum(dtype=torch.float64))
        scored += int(mask.sum())
        bar.update(len(ks))
    bar.close()
    if scored != tokens.numel() - 1:  # the window arithmetic promises this; never report a wrong count
        raise AssertionError(f"scored {scored} targets, expected {tokens.numel() - 1}")
    return Score(total, scored, plan.n_windows)


def perplexities(loss_sum: float, n_bpe: int, n_orig: int) -> tuple[float, float]:
    """(token-level, word-level) perplexity; inf instead of an overflow."""
    def safe_exp(x: float) -> float:
        return math.exp(x) if x < 709.0 else math.inf
    return safe_exp(loss_sum / (n_bpe - 1)), safe_exp(loss_sum / (n_orig - 1))


def prepare_tokens(text: str, tokenizer_json: str | Path) -> tuple[int, torch.Tensor]:
    """(N_orig, BPE ids of the detokenized text as one stream)."""
    n_orig = count_original_words(text)
    ids = load_encode(tokenizer_json)([wikitext_detokenize(text)])[0]
    return n_orig, torch.tensor(ids, dtype=torch.long)


def resolve_seq_len(seq_len: int, n_positions: int, where: str) -> int:
    """0 means the model's n_positions; more than that is a config error."""
    if seq_len == 0:
        return n_positions
    if seq_len > n_positions:
        raise WikiGPTError(f"{where}: eval.wiki103.seq_len {seq_len} exceeds the model's n_positions {n_positions}")
    return seq_len


def evaluate_wiki103(model_dir: str | Path, eval_file: str | Path, out_txt: str | Path, out_json: str | Path,
                     overlap: int = 32, seq_len: int = 0, batch_size: int = 8, device: str = "auto",
                     log_path: str | Path | None = None) -> dict:
    """Score `eval_file` with the model in `model_dir`; write the .txt (first line: word-level ppl) and .json."""
    model_dir, eval_file = Path(model_dir), Path(eval_file)
    dev = pick_device(device)
    model, config = load_model(model_dir, dev)
    seq_len = resolve_seq_len(seq_len, int(config["n_positions"]), str(model_dir / "config.json"))
    if overlap > seq_len:
        raise WikiGPTError(f"{eval_file}: eval.wiki103.overlap {overlap} exceeds seq_len {seq_len}")
    vocab_size = int(config["vocab_size"])
    text = read_text(eval_file)
    n_orig, tokens = prepare_tokens(text, model_dir / TOKENIZER_NAME)
    if tokens.numel() < 2 or n_orig < 2:
        raise WikiGPTError(f"{eval_file}: too little text to score ({tokens.numel()} tokens)")
    check_ids(tokens.tolist(), vocab_size, str(model_dir / TOKENIZER_NAME))
    with log_stream(log_path) as log:
        t0 = time.perf_counter()
        score = score_tokens(logits_at_for(model), tokens, seq_len, overlap, batch_size, vocab_size, dev, log)
        seconds = time.perf_counter() - t0
        token_ppl, word_ppl = perplexities(score.loss_sum, tokens.numel(), n_orig)
        result = {
            "word_ppl": word_ppl,
            "token_ppl": token_ppl,
            "loss_sum": score.loss_sum,
            "n_orig": n_orig,
            "n_bpe": tokens.numel(),
            "scored_targets": score.scored,
            "windows": score.windows,
            "overlap": overlap,
            "seq_len": seq_len,
            "batch_size": batch_size,
            "method": "Megatron-LM WikiText-103: reference detokenizer, overlapping windows, "
                      "word_ppl = exp(loss_sum / (n_orig - 1))",
            "eval_file": str(eval_file),
            "eval_sha256": sha256_file(eval_file),
            **model_hashes(model_dir),
        }
        log.write(f"{eval_file}: word-level ppl {word_ppl:.4f}, token-level ppl {token_ppl:.4f}, "
                  f"N_orig {n_orig}, N_bpe {tokens.numel()}, {score.windows} windows on {dev}, "
                  f"{seconds:.1f} s, {score.windows * seq_len / max(seconds, 1e-9):.0f} window tokens/s\n")
    write_outputs(result, out_txt, out_json)
    return result


def write_outputs(result: dict, out_txt: str | Path, out_json: str | Path) -> None:
    """Both files appear together or not at all (the .txt is renamed last)."""
    with atomic_path(out_txt) as tmp_txt, atomic_path(out_json) as tmp_json:
        tmp_json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp_txt.write_text(
            f"{result['word_ppl']:.6f}\n"
            f"# word-level perplexity on {result['eval_file']} (WikiText-103 method, overlap {result['overlap']}, "
            f"seq_len {result['seq_len']}); token-level {result['token_ppl']:.6f}; details in the .json\n",
            encoding="utf-8")



