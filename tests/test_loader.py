"""The data loader: memmap reads across shards, seeded epochs covering every window, batches as a pure
function of (seed, step, micro, rank), the EOD loss mask, weighted blends, and bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train_helpers import learnable_documents, write_manifest

from gpt2core.data.loader import BatchSource, Blend, WindowDataset, load_manifest, split_stream
from gpt2core.errors import WikiGPTError

EOD = 299


def random_docs(n: int, seed: int = 0) -> list[list[int]]:
    """Random tokens: distinct windows have distinct contents (with overwhelming probability)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, EOD, int(rng.integers(20, 300))).tolist() for _ in range(n)]


def stream_of(tmp_path: Path, shards: int = 3, dtype: str = "uint16"):
    path = write_manifest(tmp_path, dtype=dtype, shards=shards, docs={"train": random_docs(200)})
    manifest = load_manifest(path)
    return manifest, split_stream(manifest, "train", path)


def concatenated(manifest: dict, split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(s["bin"], dtype=manifest["dtype"]) for s in manifest["splits"][split]["shards"]])


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_reads_across_shard_boundaries(tmp_path: Path, dtype: str) -> None:
    manifest, stream = stream_of(tmp_path, dtype=dtype)
    whole = concatenated(manifest, "train")
    assert stream.total == len(whole) and all(isinstance(s, np.memmap) for s in stream.shards)
    boundary = int(stream.starts[1])
    for start in (0, boundary - 5, boundary, stream.total - 40):
        np.testing.assert_array_equal(stream.read(start, 40), whole[start:start + 40])


def test_an_epoch_visits_every_window_once_in_a_seeded_order(tmp_path: Path) -> None:
    _, stream = stream_of(tmp_path)
    ds = WindowDataset(stream, seq_len=64, seed=1)
    n = ds.n_windows
    assert n == (stream.total - 1) // 64
    starts = [int(ds._order(0)[i]) for i in range(n)]
    assert sorted(starts) == list(range(n))
    assert starts != list(range(n))
    assert list(ds._order(1)) != starts  # a new order next epoch
    assert list(WindowDataset(stream, 64, seed=2)._order(0)) != starts
    np.testing.assert_array_equal(ds.window(3), stream.read(starts[3] * 64, 65))
    np.testing.assert_array_equal(ds.window(n + 3), stream.read(int(ds._order(1)[3]) * 64, 65))


def test_batches_are_a_pure_function_of_step_micro_rank(tmp_path: Path) -> None:
    _, stream = stream_of(tmp_path)

    def source(world: int) -> BatchSource:
        return BatchSource(Blend([WindowDataset(stream, 32, 7)], [1.0]), micro_batch=4, grad_accum=2,
                           world=world, eod_id=EOD)

    a, b = source(2), source(2)
    late = a.get(5, 1, 1)  # read out of order on a fresh source: same as in order on another
    for step in range(6):
        for micro in range(2):
            for rank in range(2):
                b.get(step, micro, rank)
    np.testing.assert_array_equal(late.x.numpy(), b.get(5, 1, 1).x.numpy())
    seen = [tuple(row) for s in range(3) for m in range(2) for r in range(2) for row in a.get(s, m, r).x.tolist()]
    assert len(set(seen)) == len(seen)  # no window read twice across ranks and micro-steps in an epoch
    one = source(1)
    np.testing.assert_array_equal(one.get(0, 1).x.numpy(), a.get(0, 0, 1).x.numpy())


def test_targets_are_shifted_inputs_and_eod_inputs_are_masked(tmp_path: Path) -> None:
    _, stream = stream_of(tmp_path)
    ds = WindowDataset(stream, 64, 3)
    batch = BatchSource(Blend([ds], [1.0]), 8, 1, 1, EOD).get(0)
    np.testing.assert_array_equal(batch.x[:, 1:].numpy(), batch.y[:, :-1].numpy())
    assert (batch.x == EOD).any()
    np.testing.assert_array_equal(batch.mask.numpy(), (batch.x != EOD).float().numpy())
    unmasked = BatchSource(Blend([ds], [1.0]), 8, 1, 1, EOD, mask_eod=False).get(0)
    assert unmasked.mask.min() == 1.0


def test_blend_is_deterministic_and_follows_weights(tmp_path: Path) -> None:
    streams = []
    for i, vocab_eod in enumerate(((300, 299), (300, 299))):
        docs = learnable_documents(120, *vocab_eod, seed=10 + i)
        path = write_manifest(tmp_path / f"c{i}", docs={"train": docs}, shards=1)
        streams.append(split_stream(load_manifest(path), "train", path))
    datasets = [WindowDataset(s, 16, 5) for s in streams]
    blend = Blend(datasets, [3.0, 1.0])
    blend.sample(4000)
    which = blend._which[:4000]
    assert abs((which == 0).mean() - 0.75) < 1e-3
    assert max(abs((which[:k] == 0).sum() - 0.75 * k) for k in range(1, 4000)) <= 1.0  # evenly interleaved
    again = Blend([WindowDataset(s, 16, 5) for s in streams], [3.0, 1.0])
    for g in (3999, 17, 1000):
        np.testing.assert_array_equal(again.sample(g), blend.sample(g))
    local = blend._local[:4000]
    for d in (0, 1):
        assert list(local[which == d]) == list(range(int((which == d).sum())))


def test_shard_size_mismatch_names_the_file(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    manifest = json.loads(path.read_text())
    bad = manifest["splits"]["train"]["shards"][1]["bin"]
    Path(bad).write_bytes(Path(bad).read_bytes()[:-2])
    with pytest.raises(WikiGPTError, match=f"{bad}: .* bytes, the manifest says"):
        split_stream(load_manifest(path), "train", path)


def test_missing_shard_and_bad_manifest(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    manifest = json.loads(path.read_text())
    Path(manifest["splits"]["valid"]["shards"][0]["bin"]).unlink()
    with pytest.raises(WikiGPTError, match="token shard is missing"):
        split_stream(load_manifest(path), "valid", path)
    del manifest["tokenizer"]["eod_id"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(WikiGPTError, match=f"{path}: malformed manifest"):
        load_manifest(path)
    path.write_text("{")
    with pytest.raises(WikiGPTError, match="cannot read manifest"):
        load_manifest(path)


def test_too_few_tokens_is_a_clear_error(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, docs={"train": [[1, 2, 3]]}, shards=1)
    with pytest.raises(WikiGPTError, match="fewer than seq_len"):
        WindowDataset(split_stream(load_manifest(path), "train", path), 64, 0)
