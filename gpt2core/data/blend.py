"""Training on several corpora: a weighted train blend and one valid set per corpus, from the manifest.

Why a module of its own: the manifest's `corpora` section (gpt2core.data.manifest) names each corpus's
shards, language and weight; this turns it into gpt2core.data.loader objects (WindowDataset per corpus, one
Blend by weight) so the trainer stays corpus-agnostic. Everything is a pure function of (seed, step,
micro step, rank) as in the loader: resuming a blended run needs only the step number. A manifest without
`corpora` (written before it existed) is one corpus named `all` with weight 1 built from its `splits`.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpt2core.data.loader import _DTYPES, BatchSource, Blend, TokenStream, WindowDataset
from gpt2core.errors import WikiGPTError


@dataclass(frozen=True)
class Corpus:
    """One corpus of the manifest: name, language, weight and its split sections."""

    name: str
    lang: str | None
    weight: float
    splits: dict


def corpora(manifest: dict, manifest_path: str | Path = "manifest.json") -> list[Corpus]:
    """The manifest's corpora in order (or its overall splits as one corpus for an older manifest)."""
    sections = manifest.get("corpora")
    if not sections:
        return [Corpus("all", None, 1.0, manifest["splits"])]
    out = []
    try:
        for c in sections:
            weight = float(c["weight"])
            if not weight > 0:
                raise WikiGPTError(f"{manifest_path}: corpus {c['name']!r} has weight {weight}, not > 0")
            out.append(Corpus(str(c["name"]), c.get("lang"), weight, c["splits"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WikiGPTError(f"{manifest_path}: malformed corpora section (missing or bad {exc})") from None
    return out


def corpus_seed(seed: int, name: str, split: str, alone: bool = False) -> int:
    """A window-order seed per (corpus, split): adding a corpus never reorders another corpus's windows.

    A corpus `alone` in its manifest keeps `seed` itself, so a single-corpus run reads exactly the windows
    the single-stream loader read (same batches, checkpoints resume unchanged).
    """
    if alone:
        return seed
    digest = hashlib.blake2b(f"{seed}\x00{name}\x00{split}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def corpus_stream(manifest: dict, corpus: Corpus, split: str) -> TokenStream | None:
    """One corpus's split as a TokenStream, or None when the split holds no tokens."""
    shards = corpus.splits.get(split, {}).get("shards", [])
    if not shards or not sum(int(s["tokens"]) for s in shards):
        return None
    return TokenStream([Path(s["bin"]) for s in shards], [int(s["tokens"]) for s in shards],
                       _DTYPES[manifest["dtype"]], name=f"{corpus.name}/{split}")


def train_blend(manifest: dict, seq_len: int, seed: int,
                manifest_path: str | Path = "manifest.json") -> tuple[Blend, list[Corpus]]:
    """The weighted train blend of every corpus that has train tokens (and the corpora it draws from)."""
    datasets, used = [], []
    every = corpora(manifest, manifest_path)
    for corpus in every:
        stream = corpus_stream(manifest, corpus, "train")
        if stream is None:
            raise WikiGPTError(f"{manifest_path}: corpus {corpus.name!r} has no train tokens")
        datasets.append(WindowDataset(stream, seq_len, corpus_seed(seed, corpus.name, "train", len(every) == 1)))
        used.append(corpus)
    return Blend(datasets, [c.weight for c in used]), used


def valid_sources(manifest: dict, seq_len: int, seed: int, micro_batch: int, eod_id: int,
                  mask_eod: bool = True, split: str = "valid") -> dict[str, BatchSource]:
    """One fixed-order BatchSource per corpus with enough `split` tokens for a window; the others are left
    out with a warning on stderr (a corpus silently missing from valid_loss_by_corpus misleads)."""
    out = {}
    every = corpora(manifest)
    for corpus in every:
        stream = corpus_stream(manifest, corpus, split)
        if stream is None or stream.total < seq_len + 1:
            print(f"warning: corpus {corpus.name}: {0 if stream is None else stream.total} {split} tokens, "
                  f"fewer than one window of {seq_len + 1}; it has no {split} loss", file=sys.stderr)
            continue
        data = WindowDataset(stream, seq_len, corpus_seed(seed, corpus.name, split, len(every) == 1))
        out[corpus.name] = BatchSource(Blend([data], [1.0]), micro_batch, 1, 1, eod_id, mask_eod)
    return out


@torch.no_grad()
def per_corpus_loss(loss_fn, sources: dict[str, BatchSource], iters: int,
                    weights: dict[str, float] | None = None) -> dict[str, float]:
    """Mean loss over the first `iters` fixed batches of each corpus, and `overall`.

    `loss_fn(batch) -> float` scores one Batch (the trainer's evaluate loop for one batch). `overall` is
    the weight-averaged corpus loss (weights: the blend's; equal when not given), i.e. the expected valid
    loss of the training mixture.
    """
    if not sources:
        return {}
    losses = {name: float(np.mean([loss_fn(src.get(i)) for i in range(iters)])) for name, src in sources.items()}
    w = {name: (weights or {}).get(name, 1.0) for name in losses}
    total = sum(w.values())
    return {**losses, "overall": sum(losses[n] * w[n] for n in losses) / total}


@torch.no_grad()
def model_valid_loss(model: torch.nn.Module, sources: dict[str, BatchSource], iters: int,
                     weights: dict[str, float] | None = None, device: torch.device | str = "cpu",
                     autocast=None) -> dict[str, float]:
    """Per-corpus and `overall` valid loss of `model` (masked next-token loss, as in training).

    `autocast`: a zero-argument callable giving the trainer's autocast context (None: full precision).
    The model is put in eval mode for the evaluation and back in its former mode afterwards.
    """
    import contextlib

    from gpt2core.model import lm_loss

    was_training = model.training
    model.eval()

    def loss_fn(batch) -> float:
        x, y, mask = batch.x.to(device), batch.y.to(device), batch.mask.to(device)
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(x)
        return lm_loss(logits, y, mask).item()

    try:
        return per_corpus_loss(loss_fn, sources, iters, weights)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class BlendData:
    """What a trainer needs: the blended train source, a valid source per corpus, the blend weights."""

    train: BatchSource
    valid: dict[str, BatchSource]
    weights: dict[str, float]


def blend_data(manifest: dict, manifest_path: str | Path, seq_len: int, seed: int, micro_batch: int,
               grad_accum: int, world: int, mask_eod: bool = True) -> BlendData:
    """Train blend (windows seeded by `seed`) and per-corpus valid sets (seeded by `seed + 1`)."""
    eod = int(manifest["tokenizer"]["eod_id"])
    blend, used = train_blend(manifest, seq_len, seed, manifest_path)
    train = BatchSource(blend, micro_batch, grad_accum, world, eod, mask_eod)
    valid = valid_sources(manifest, seq_len, seed + 1, micro_batch, eod, mask_eod)
    return BlendData(train, valid, {c.name: c.weight for c in used})
