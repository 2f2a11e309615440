"""A full disk at every stage that writes (download, presplit, tokenize, merge, checkpoint save) is one line
naming the output, exit 1, nothing under a final name. The disk is a small tmpfs (root only; skipped with a
reason elsewhere; CI runs as root)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import disklib
import pytest
import torch
from disklib import fill_leaving, mounted_tmpfs, one_line_error

from gpt2core.errors import WikiGPTError, disk_full

small_disk = disklib.small_disk  # the fixture (a 256 KiB tmpfs)


def noise(n: int, seed: int = 0) -> str:
    """`n` characters of incompressible words (zstd must not shrink them below the disk's size)."""
    import random

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(n // 5)]
    return " ".join(words)[:n]


def write_extract(tmp_path: Path, articles: int) -> Path:
    """An extract folder of `articles` 20 KB articles of noise."""
    part = tmp_path / "extract" / "AA"
    part.mkdir(parents=True)
    with open(part / "wiki_00", "w", encoding="utf-8") as fh:
        for i in range(articles):
            fh.write(json.dumps({"id": str(i), "title": f"T{i}", "url": "", "text": noise(20_000, i)}) + "\n")
    return tmp_path / "extract"


def test_download_to_a_full_disk_names_the_file(tmp_path: Path, small_disk: Path, capsys) -> None:
    from gpt2core.data.download import download

    src = tmp_path / "dump.xml"
    src.write_bytes(noise(600_000).encode())
    dest = small_disk / "downloads" / "dump.xml"
    line = one_line_error(lambda: download({"url": str(src)}, dest), capsys)
    assert str(dest) in line and "no space left on device" in line
    assert not dest.exists()


def test_presplit_to_a_full_disk_names_the_shard(tmp_path: Path, small_disk: Path, capsys) -> None:
    from gpt2core.data.presplit import presplit_shard

    extract = write_extract(tmp_path, 40)
    out = small_disk / "presplit" / "00000.parquet"
    line = one_line_error(lambda: presplit_shard([("p", extract)], out, 0, 1), capsys)
    assert str(out) in line and "no space left on device" in line
    assert not out.exists()
    assert not list(out.parent.iterdir())  # the temporary is gone too


def test_tokenize_to_a_full_disk_names_the_shard(tmp_path: Path, small_disk: Path, capsys) -> None:
    from gpt2core.data.presplit import presplit_shard
    from gpt2core.data.shards import tokenize_shard
    from gpt2core.data.tokenizer import train_bpe

    shard = tmp_path / "00000.parquet"
    presplit_shard([("p", write_extract(tmp_path, 30))], shard, 0, 1)
    tok = tmp_path / "tokenizer.json"
    train_bpe([[str(shard)]], tok, vocab_size=300, min_frequency=2, sample_bytes=100_000)
    out = small_disk / "tokens" / "00000"
    line = one_line_error(lambda: tokenize_shard(shard, tok, out, [1, 0, 0], 1, "uint16"), capsys)
    assert str(out) in line and "no space left on device" in line
    assert not out.exists()


def _tiny_model():
    from gpt2core.model import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=1000, padded_vocab_size=1024, n_layer=2, n_head=2, n_embd=64, n_positions=64)
    return GPT(cfg), cfg


@pytest.mark.parametrize("layout", ["plain", "sharded"])
def test_checkpoint_save_to_a_full_disk_names_the_step(tmp_path: Path, capsys, layout: str) -> None:
    """Both layouts: safetensors + torch.save, and DCP's save (one process, no process group), whose
    CheckpointException (a BaseException) carries the OSError. On a 1 MiB tmpfs that holds step 1 and then
    has room for only part of step 2, saving step 2 raises the OSError (ENOSPC) itself, which the CLI turns
    into one line naming the step; nothing is left under a final name and no temporary behind, step 1 stays
    intact, and the same save succeeds once there is room."""
    from gpt2core.model import GPT, GPTConfig
    from gpt2core.training.checkpoint.integrity import verify_checksums
    from gpt2core.training.checkpoint.plain import save_checkpoint
    from gpt2core.training.checkpoint.sharded import save_sharded

    save = save_checkpoint if layout == "plain" else save_sharded
    cfg = GPTConfig(vocab_size=100, padded_vocab_size=128, n_layer=1, n_head=2, n_embd=16, n_positions=16)
    model = GPT(cfg)  # small enough that step 1 fits on the disk in either layout
    opt = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()  # the optimizer has state to save

    def save_step(step: int) -> None:
        save(root, step, model, opt, {"model_config": cfg.to_dict(), "tp": 1}, 5)

    def left() -> list[str]:
        return sorted(p.name for p in root.iterdir())

    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        root = disk / "ckpts"
        save_step(1)
        filler = fill_leaving(disk, 24 * 1024)  # room for part of a checkpoint

        with pytest.raises(OSError) as info:  # "DID NOT RAISE": the checkpoint fit, the disk was not full
            save_step(2)
        assert info.value.errno == errno.ENOSPC, info.value  # raised as itself
        assert left() == ["step_0000001"]  # no step_0000002, no temporary

        line = one_line_error(lambda: save_step(2), capsys)
        assert line.startswith(f"error: {root}/") and "step_0000002" in line and "no space left on device" in line
        assert left() == ["step_0000001"]
        verify_checksums(root / "step_0000001")  # the previous checkpoint is intact

        filler.unlink()
        save_step(2)
        verify_checksums(root / "step_0000002")
        assert left() == ["step_0000001", "step_0000002"]


def test_merge_to_a_full_disk_names_the_model_folder(small_disk: Path, capsys) -> None:
    from gpt2core.export.hf import export_hf

    model, _ = _tiny_model()
    out = small_disk / "model"
    line = one_line_error(lambda: export_hf(model, out), capsys)
    assert str(out) in line and "no space left on device" in line
    assert not out.exists()


def test_a_full_disk_inside_a_distributed_checkpoint_failure_is_found() -> None:
    """dcp.save reports a rank's OSError inside a CheckpointException, a BaseException."""
    from torch.distributed.checkpoint.api import CheckpointException

    full = OSError(errno.ENOSPC, "No space left on device")
    wrapped = CheckpointException("save failed", {1: (full, None)})
    assert disk_full(wrapped) is full
    assert disk_full(CheckpointException("save failed", {0: (ValueError("x"), None)})) is None
    assert disk_full(WikiGPTError("x")) is None


def test_the_metrics_log_on_a_full_disk_names_itself(tmp_path: Path, small_disk: Path, capsys) -> None:
    from gpt2core.training.metrics import MetricsLog

    log = MetricsLog(small_disk / "metrics.jsonl")

    def fill() -> None:
        for step in range(100_000):
            log.write({"step": step, "loss": 1.0, "note": "x" * 200})

    line = one_line_error(fill, capsys)
    assert str(small_disk / "metrics.jsonl") in line and "no space left on device" in line


@pytest.mark.e2e
@pytest.mark.parametrize("size", ["64k", "128k"])
def test_the_workflow_on_a_full_disk_stops_with_one_line_and_reruns_once_there_is_room(tmp_path: Path,
                                                                                      size: str) -> None:
    """data/ on a small tmpfs: whichever job meets the full disk (a download or eval_titles at 64k, extract at
    128k) fails with one line naming its output; with room (the mount gone), a plain rerun completes."""
    from conftest import run_snakemake, tiny_config, write_config

    target = "data/presplit/samplewiki/00000.parquet"
    with mounted_tmpfs(tmp_path / "data", size):
        write_config(tmp_path, tiny_config())
        run = run_snakemake(tmp_path, target, check=False, timeout=300)
        errors = {ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("error:")}
        assert run.returncode != 0 and errors, run.stderr[-3000:]
        for line in errors:  # one line for each job that met the full disk (two may run at once)
            assert "no space left on device" in line and line.startswith("error: data/"), line
    run_snakemake(tmp_path, target, timeout=300)
    assert (tmp_path / target).is_file()


def test_the_one_line_error_of_a_full_disk_is_still_its_oserror(tmp_path: Path, small_disk: Path) -> None:
    """Callers that handle the OSError (errno ENOSPC) keep working: DiskFullError is both."""
    from gpt2core.fsutil import write_text_atomic

    with pytest.raises(OSError) as info:
        write_text_atomic(small_disk / "big.txt", noise(400_000))
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, WikiGPTError)
    assert str(info.value).startswith(f"{small_disk / 'big.txt'}: no space left on device")
