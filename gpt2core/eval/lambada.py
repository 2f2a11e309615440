"""LAMBADA accuracy as the reference computes it (Megatron-LM `_LambadaDataset`, SPEC "LAMBADA").

strict: the context is the text before the last whitespace-separated word (stripped), the target is the BPE
of " " + word; a line counts only if every target token is the argmax given the context and the earlier
target tokens. last_token (the older, non-strict variant): the whole line is tokenized as one, the target
is its last BPE token alone. Contexts longer than the model's positions lose their oldest tokens (the
reference would fail there); the count is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from tqdm import tqdm

from gpt2core.errors import WikiGPTError
from gpt2core.eval.encoder import Encode, load_encode
from gpt2core.eval.runtime import check_ids, load_model, log_stream, model_hashes, pick_device, read_text
from gpt2core.eval.scoring import LogitsAt, logits_at_for
from gpt2core.export.hf import TOKENIZER_NAME
from gpt2core.fsutil import atomic_path, sha256_file


@dataclass(frozen=True)
class Example:
    context: list[int]
    target: list[int]


def read_lambada(path: str | Path) -> list[str]:
    """The `text` of each JSON line; a bad line is an error naming file and line."""
    path = Path(path)
    texts = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WikiGPTError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or len(text.split()) < 2:
            raise WikiGPTError(f"{path}:{lineno}: needs a \"text\" string of at least two words")
        texts.append(text)
    if not texts:
        raise WikiGPTError(f"{path}: no lines to evaluate")
    return texts


def strict_examples(texts: list[str], encode: Encode) -> list[Example]:
    """Context before the last word, target = BPE(" " + last word)."""
    contexts, targets = [], []
    for text in texts:
        word = text.split()[-1]
        contexts.append(text[: text.rfind(word)].strip())
        targets.append(" " + word)
    return [Example(c, t) for c, t in zip(encode(contexts), encode(targets), strict=True)]


def last_token_examples(texts: list[str], encode: Encode) -> list[Example]:
    """The whole line tokenized as one; the target is its last token."""
    return [Example(ids[:-1], ids[-1:]) for ids in encode(texts)]


@torch.inference_mode()
def count_correct(logits_at: LogitsAt, examples: list[Example], n_positions: int, vocab_size: int,
                  batch_size: int, device: torch.device | str = "cpu", progress: TextIO | None = None,
                  desc: str = "lambada") -> tuple[int, int]:
    """(lines whose every target token is the argmax, lines whose context was truncated)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].context) - len(examples[i].target))
    correct = truncated = 0
    bar = tqdm(total=len(examples), desc=desc, unit="line", file=progress, disable=progress is None,
               mininterval=2.0)
    for lo in range(0, len(order), batch_size):
        batch = [examples[i] for i in order[lo: lo + batch_size]]
        seqs, spans = [], []
        for ex in batch:
            if not ex.target or not ex.context:
                raise ValueError("every example needs a context and a target")
            if len(ex.target) > n_positions:
                raise WikiGPTError(f"a LAMBADA target of {len(ex.target)} tokens exceeds n_positions {n_positions}")
            seq = (ex.context + ex.target)[:-1]  # inputs; position i predicts token i + 1
            if len(seq) > n_positions:
                seq, truncated = seq[len(seq) - n_positions:], truncated + 1
            seqs.append(seq)
            spans.append(len(seq) - len(ex.target))  # position predicting the first target token
        T, K = max(map(len, seqs)), max(len(ex.target) for ex in batch)
        idx = torch.zeros(len(batch), T, dtype=torch.long)
        positions = torch.zeros(len(batch), K, dtype=torch.long)
        targets = torch.zeros(len(batch), K, dtype=torch.long)
        mask = torch.zeros(len(batch), K, dtype=torch.bool)
        for row, (seq, first, ex) in enumerate(zip(seqs, spans, batch, strict=True)):
            n = len(ex.target)
            idx[row, : len(seq)] = torch.tensor(seq)
            positions[row, :n] = torch.arange(first, first + n)
            targets[row, :n] = torch.tensor(ex.target)
            mask[row, :n] = True
        idx, positions, targets, mask = (t.to(device) for t in (idx, positions, targets, mask))
        pred = logits_at(idx, positions)[..., :vocab_size].argmax(-1)  # (B, K)
        ok = ((pred == targets) | ~mask).all(-1)
        correct += int(ok.sum())
        bar.update(len(batch))
    bar.close()
    return correct, truncated


def evaluate_lambada(model_dir: str | Path, eval_file: str | Path, out_json: str | Path, batch_size: int = 16,
                     device: str = "auto", log_path: str | Path | None = None) -> dict:
    """Strict and last-token accuracy of the model in `model_dir` on `eval_file`; writes `out_json`."""
    model_dir, eval_file = Path(model_dir), Path(eval_file)
    dev = pick_device(device)
    model, config = load_model(model_dir, dev)
    n_positions, vocab_size = int(config["n_positions"]), int(config["vocab_size"])
    texts = read_lambada(eval_file)
    encode = load_encode(model_dir / TOKENIZER_NAME)
    strict, last = strict_examples(texts, encode), last_token_examples(texts, encode)
    for ex in strict:
        check_ids(ex.context + ex.target, vocab_size, str(model_dir / TOKENIZER_NAME))
    logits_at = logits_at_for(model)
    with log_stream(log_path) as log:
        n_strict, trunc = count_correct(logits_at, strict, n_positions, vocab_size, batch_size, dev, log, "lambada strict")
        n_last, _ = count_correct(logits_at, last, n_positions, vocab_size, batch_size, dev, log, "lambada last-token")
        result = {
            "strict_accuracy": n_strict / len(texts),
            "last_token_accuracy": n_last / len(texts),
            "strict_correct": n_strict,
            "last_token_correct": n_last,
            "lines": len(texts),
            "truncated_contexts": trunc,
            "batch_size": batch_size,
            "eval_file": str(eval_file),
            "eval_sha256": sha256_file(eval_file),
            **model_hashes(model_dir),
        }
        log.write(f"{eval_file}: strict accuracy {result['strict_accuracy']:.4f} ({n_strict}/{len(texts)}), "
                  f"last-token accuracy {result['last_token_accuracy']:.4f} ({n_last}/{len(texts)}), "
                  f"{trunc} contexts truncated\n")
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
