"""Training batches from the token shards named in results/data/manifest.json.

Why this shape: shards are read through np.memmap (never into RAM), and which window a rank reads at a
step is a pure function of (seed, step, micro step, rank), so a resumed run reads exactly what an
uninterrupted run would have read, with no loader state to save.

A split's shards form one token stream (documents already end with EOD). It is cut into windows of
seq_len + 1 tokens starting every seq_len tokens (inputs and shifted targets, as Megatron does); each epoch
visits every window once in an order seeded by (seed, epoch). Several streams can be blended with weights:
sample g goes to the stream whose weighted virtual time (k + 0.5) / w is the g-th smallest, an exact,
deterministic interleaving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpt2core.errors import WikiGPTError

_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


def load_manifest(path: str | Path) -> dict:
    """The manifest as a dict, checked for the keys the trainer reads."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{path}: cannot read manifest ({exc})") from None
    try:
        if manifest["dtype"] not in _DTYPES:
            raise WikiGPTError(f"{path}: dtype {manifest['dtype']!r} is not one of {sorted(_DTYPES)}")
        tok = manifest["tokenizer"]
        int(tok["vocab_size"]), int(tok["eod_id"]), str(tok["sha256"])
        for split in manifest["splits"].values():
            for shard in split["shards"]:
                shard["bin"], int(shard["tokens"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WikiGPTError(f"{path}: malformed manifest (missing or bad {exc})") from None
    return manifest


class TokenStream:
    """The concatenated tokens of a list of .bin shards, memory-mapped, read by global offset."""

    def __init__(self, bins: list[Path], counts: list[int], dtype: np.dtype, name: str = "") -> None:
        self.name = name
        self.shards: list[np.memmap] = []
        for path, count in zip(bins, counts, strict=True):
            if not path.is_file():
                raise WikiGPTError(f"{path}: token shard is missing")
            size = path.stat().st_size
            if size != count * np.dtype(dtype).itemsize:
                raise WikiGPTError(f"{path}: {size} bytes, the manifest says {count} tokens of {np.dtype(dtype)}")
            if count:
                self.shards.append(np.memmap(path, dtype=dtype, mode="r"))
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])
        self.total = int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, across shard boundaries."""
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        while filled < length:
            shard = self.shards[i]
            off = pos - int(self.starts[i])
            take = min(length - filled, len(shard) - off)
            out[filled:filled + take] = shard[off:off + take]
            filled, pos, i = filled + take, pos + take, i + 1
        return out


def split_stream(manifest: dict, split: str, manifest_path: str | Path = "manifest.json") -> TokenStream:
    """One split of a manifest as a TokenStream (paths in the manifest are relative to the working dir)."""
    try:
        shards = manifest["splits"][split]["shards"]
    except KeyError:
        raise WikiGPTError(f"{manifest_path}: no split {split!r}") from None
    return TokenStream([Path(s["bin"]) for s in shards], [int(s["tokens"]) for s in shards],
                       _DTYPES[manifest["dtype"]], name=split)


class WindowDataset:
    """Fixed windows of seq_len + 1 tokens over one stream, in a seeded order per epoch."""

    def __init__(self, stream: TokenStream, seq_len: int, seed: int) -> None:
        self.stream, self.seq_len, self.seed = stream, seq_len, seed
        self.n_windows = (stream.total - 1) // seq_len
        if self.n_windows < 1:
            raise WikiGPTError(f"split {stream.name!r} has {stream.total} tokens, fewer than seq_len + 1 = "
                               f"{seq_len + 1}: use more data or a shorter seq_len")
        self._perm: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
            self._perm = (epoch, rng.permutation(self.n_windows))
        return self._perm[1]

    def window(self, index: int) -> np.ndarray:
        """Sample `index` of the infinite epoch sequence: seq_len + 1 tokens."""
        epoch, pos = divmod(index, self.n_windows)
        start = int(self._order(epoch)[pos]) * self.seq_len
        return self.stream.read(start, self.seq_len + 1)


class Blend:
    """A deterministic weighted interleaving of datasets: sample g -> (dataset, index within it)."""

    def __init__(self, datasets: list[WindowDataset], weights: list[float]) -> None:
        if not datasets or len(datasets) != len(weights) or min(weights) <= 0:
            raise ValueError("Blend needs one positive weight per dataset")
        total = float(sum(weights))
        self.datasets, self.weights = datasets, [w / total for w in weights]
        self._which = np.zeros(0, dtype=np.int64)
        self._local = np.zeros(0, dtype=np.int64)

    def _extend(self, n: int) -> None:
        """Schedule the first n samples: merge each dataset's virtual times (k + 0.5) / w."""
        times, which, local = [], [], []
        for d, w in enumerate(self.weights):
            k = np.arange(int(np.ceil(w * n)) + 1)
            times.append((k + 0.5) / w)
            which.append(np.full(len(k), d))
            local.append(k)
        order = np.lexsort((np.concatenate(which), np.concatenate(times)))[:n]
        self._which, self._local = np.concatenate(which)[order], np.concatenate(local)[order]

    def sample(self, g: int) -> np.ndarray:
        if len(self.datasets) == 1:
            return self.datasets[0].window(g)
        if g >= len(self._which):
            self._extend(max(2 * len(self._which), g + 1, 1024))
        return self.datasets[int(self._which[g])].window(int(self._local[g]))


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # (B, T) inputs
    y: torch.Tensor  # (B, T) targets
    mask: torch.Tensor  # (B, T) 1.0 where the loss counts


class BatchSource:
    """Micro-batches as a pure function of (step, micro, rank): resuming needs only the step number."""

    def __init__(self, blend: Blend, micro_batch: int, grad_accum: int, world: int, eod_id: int,
                 mask_eod: bool = True) -> None:
        self.blend, self.micro_batch, self.grad_accum, self.world = blend, micro_batch, grad_accum, world
        self.eod_id, self.mask_eod = eod_id, mask_eod

    def get(self, step: int, micro: int = 0, rank: int = 0) -> Batch:
        first = ((step * self.grad_accum + micro) * self.world + rank) * self.micro_batch
        data = np.stack([self.blend.sample(first + b) for b in range(self.micro_batch)])
        tokens = torch.from_numpy(data)
        x, y = tokens[:, :-1], tokens[:, 1:]
        mask = (x != self.eod_id).float() if self.mask_eod else torch.ones_like(x, dtype=torch.float32)
        return Batch(x.contiguous(), y.contiguous(), mask)
