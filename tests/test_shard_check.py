"""Training data is verified against the manifest before training reads it (issue 19, item 6): a shard
changed after gather, or a manifest pointing outside the working directory, stops the trainer in one line
naming the file; the sha256 is computed again only when a shard's stats changed since its last check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import make_trainer
from test_train_helpers import tiny_sections, write_manifest

from gpt2core.data.loader import load_manifest
from gpt2core.errors import WikiGPTError
from gpt2core.training import shard_check
from gpt2core.training.shard_check import verify_shards


def first_train_shard(tmp_path: Path) -> Path:
    return Path(load_manifest(tmp_path / "manifest.json")["splits"]["train"]["shards"][0]["bin"])


def flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[11] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_shard_changed_after_gather_is_refused_before_training(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    shard = first_train_shard(tmp_path)
    flip_a_byte(shard)
    with pytest.raises(WikiGPTError, match=rf"^{shard}: sha256 differs from {tmp_path}/manifest\.json"):
        make_trainer(tmp_path)


def test_a_shard_of_another_size_is_refused(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    shard = first_train_shard(tmp_path)
    with shard.open("ab") as f:
        f.write(b"\0\0")
    with pytest.raises(WikiGPTError, match=rf"^{shard}: \d+ bytes, .*manifest\.json lists \d+ tokens"):
        make_trainer(tmp_path)


def test_the_cache_of_verified_shards_is_checked_by_stats_and_catches_a_restored_mtime(tmp_path: Path) -> None:
    write_manifest(tmp_path)
    trainer = make_trainer(tmp_path)
    cache = trainer.paths.checkpoints / shard_check.CACHE
    manifest = load_manifest(tmp_path / "manifest.json")
    listed = shard_check.listed_shards(manifest)
    assert set(json.loads(cache.read_text())["files"]) == set(listed)
    shard = first_train_shard(tmp_path)
    flip_a_byte(shard, keep_mtime=True)  # same size and mtime: only ctime tells
    with pytest.raises(WikiGPTError, match="sha256 differs"):
        make_trainer(tmp_path)
    # a shard whose stats match the cache is not hashed again: a cache claiming the changed file was
    # verified is believed (that is what keeps a start on large shards cheap)
    record = json.loads(cache.read_text())
    record["files"][str(shard)].update(shard_check._stat_key(shard))
    cache.write_text(json.dumps(record))
    verify_shards(manifest, tmp_path / "manifest.json", 2, cache=cache)


@pytest.mark.parametrize("where", ["absolute", "climbing"])
def test_a_manifest_listing_a_shard_outside_the_working_directory_is_refused(tmp_path: Path, where: str) -> None:
    work, outside = tmp_path / "work", tmp_path / "elsewhere"
    write_manifest(work)
    write_manifest(outside)  # the same documents: only the path gives it away
    manifest = json.loads((work / "manifest.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]
    other = first_train_shard(outside)
    shard["bin"] = str(other) if where == "absolute" else os.path.relpath(other, work)
    (work / "manifest.json").write_text(json.dumps(manifest))
    model, train = tiny_sections()
    cmd = [sys.executable, "-m", "gpt2core.train", "--manifest", "manifest.json", "--model", json.dumps(model),
           "--train", json.dumps(train), "--data-seed", "1234", "--checkpoints", "checkpoints/run", "--done", "out/done.json",
           "--metrics", "out/metrics.jsonl"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "outside the working directory" in errors[0] and shard["bin"] in errors[0]
    assert not (work / "out").exists()
