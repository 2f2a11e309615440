"""Damaged state on disk: checksums catch a truncated, bit-flipped, missing or extra checkpoint file; the
trainer falls back to the newest intact checkpoint with a warning (bitwise the same final weights) or stops
with one clear line when none is intact; a damaged results/model/ is a clear error for its consumers;
a lock left by a SIGKILLed Snakemake is told apart from a live one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import snakemake_locks
import torch
from test_train_helpers import tiny_sections, typed, write_manifest

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import load_hf
from gpt2core.fsutil import process_start_time
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint import plain as ckpt
from gpt2core.training.trainer import RunPaths, Trainer


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---- gpt2core.training.checkpoint.integrity on a plain directory --------------------------------------------------------------
@pytest.fixture
def stepdir(tmp_path: Path) -> Path:
    d = tmp_path / "step_0000010"
    (d / "rng").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(os.urandom(4096))
    (d / "meta.json").write_text('{"step": 10}\n')
    (d / "rng" / "rank_00000.pt").write_bytes(b"x" * 100)
    integrity.write_checksums(d)
    return d


def test_intact_directory_verifies(stepdir: Path) -> None:
    integrity.verify_checksums(stepdir)
    listed = json.loads((stepdir / integrity.CHECKSUMS).read_text())["files"]
    assert sorted(listed) == ["meta.json", "model.safetensors", "rng/rank_00000.pt"]


@pytest.mark.parametrize("damage, expect", [
    (lambda d: truncate(d / "model.safetensors"), r"model\.safetensors: 2048 bytes, 4096 were written"),
    (lambda d: flip_byte(d / "model.safetensors"), r"model\.safetensors: sha256 differs .* \(corrupted\)"),
    (lambda d: (d / "rng" / "rank_00000.pt").unlink(), r"rank_00000\.pt: missing"),
    (lambda d: (d / "stray.pt").write_bytes(b"1"), r"stray\.pt: not listed"),
    (lambda d: (d / integrity.CHECKSUMS).unlink(), r"checksums\.json: missing"),
    (lambda d: (d / integrity.CHECKSUMS).write_text("{not json"), r"checksums\.json: unreadable"),
])
def test_each_kind_of_damage_is_named_in_one_line(stepdir: Path, damage, expect) -> None:
    damage(stepdir)
    with pytest.raises(integrity.IntegrityError, match=expect) as info:
        integrity.verify_checksums(stepdir)
    assert "\n" not in str(info.value) and str(stepdir) in str(info.value)


def test_newest_intact_falls_back_with_a_warning_or_stops(tmp_path: Path) -> None:
    steps = []
    for n in (5, 10, 15):
        d = tmp_path / f"step_{n:07d}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(os.urandom(256))
        integrity.write_checksums(d)
        steps.append(d)
    warnings: list[str] = []
    assert integrity.newest_intact(steps, warnings.append) == steps[-1] and not warnings
    flip_byte(steps[2] / "model.safetensors")
    truncate(steps[1] / "model.safetensors")
    assert integrity.newest_intact(steps, warnings.append) == steps[0]
    assert len(warnings) == 3 and "step_0000015" in warnings[0] and "falling back to" in warnings[2]
    flip_byte(steps[0] / "model.safetensors", 0)
    with pytest.raises(integrity.IntegrityError, match=f"no intact checkpoint in {tmp_path}"):
        integrity.newest_intact(steps, warnings.append)
    assert integrity.newest_intact([], warnings.append) is None


# ---- the trainer: fall back to the previous good checkpoint, or stop clearly ------------------------------
def make_trainer(tmp_path: Path, run: str) -> Trainer:
    manifest = tmp_path / "manifest.json"
    if not manifest.exists():
        write_manifest(tmp_path)
    mc, tc = tiny_sections(iters=20, save_interval=5, keep_last=3)
    paths = RunPaths(manifest, tmp_path / "checkpoints" / run, tmp_path / run / "done.json",
                     tmp_path / run / "metrics.jsonl")
    return Trainer(*typed(mc, tc), 1234, paths)


def killed_run(tmp_path: Path, run: str, at: int) -> Path:
    """A run whose process died after `at` iterations (checkpoints at 5, 10, ...); its checkpoint root."""
    trainer = make_trainer(tmp_path, run)
    trainer.start()
    for _ in range(at):
        trainer.iteration()
    trainer.metrics.close()
    return trainer.paths.checkpoints


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_newest_checkpoint_falls_back_and_ends_bitwise_equal(tmp_path: Path, damage: str,
                                                                     capsys: pytest.CaptureFixture) -> None:
    straight = make_trainer(tmp_path, "straight")
    straight.run()
    root = killed_run(tmp_path, "killed", 12)
    newest = ckpt.latest_checkpoint(root)
    assert newest.name == "step_0000010"
    (truncate if damage == "truncated" else flip_byte)(newest / "optimizer.pt")
    resumed = make_trainer(tmp_path, "killed")
    assert resumed.start() == 5
    err = capsys.readouterr().err
    assert f"warning: {newest / 'optimizer.pt'}" in err and "falling back to" in err
    resumed.metrics.close()
    resumed = make_trainer(tmp_path, "killed")
    resumed.run()
    for key, value in straight.raw_model.state_dict().items():
        assert torch.equal(resumed.raw_model.state_dict()[key], value), key


def test_partial_saves_of_a_killed_run_go_at_its_next_start(tmp_path: Path) -> None:
    """A save killed or failed before its rename leaves a temporary; the next start removes it (the run's lock
    is held, so nobody writes there) instead of keeping it on disk until that step is saved again. A good
    copy a killed save had set aside (`.old-`, its step directory missing) comes back and is resumed from."""
    root = killed_run(tmp_path, "killed", 12)
    dead = dead_pid()
    (root / ".step_0000015.tmp" / "dcp").mkdir(parents=True)  # a sharded save's (no writer tag)
    (root / ".step_0000015.tmp" / "dcp" / "__0_0.distcp").write_bytes(b"partial")
    (root / f".step_0000015.tmp-{dead}").mkdir()  # a plain save's, its writer dead
    (root / f".step_0000015.tmp-{dead}" / "model.safetensors").write_bytes(b"partial")
    os.replace(root / "step_0000010", root / f".step_0000010.old-{dead}")  # killed between its two renames
    resumed = make_trainer(tmp_path, "killed")
    assert resumed.start() == 10
    assert sorted(p.name for p in root.iterdir() if p.name.startswith((".step", "step"))) == [
        "step_0000005", "step_0000010"]
    resumed.metrics.close()


def test_no_intact_checkpoint_stops_with_a_clear_error(tmp_path: Path) -> None:
    root = killed_run(tmp_path, "killed", 7)
    only = ckpt.latest_checkpoint(root)
    flip_byte(only / "model.safetensors")
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(WikiGPTError, match=f"no intact checkpoint in {root}: {only / 'model.safetensors'}"):
        make_trainer(tmp_path, "killed").start()
    assert sorted(p.name for p in root.iterdir()) == before  # nothing deleted: the user decides


def test_checkpoints_carry_checksums(tmp_path: Path) -> None:
    root = killed_run(tmp_path, "run", 5)
    integrity.verify_checksums(ckpt.latest_checkpoint(root))


# ---- a damaged results/model/ -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpt2core.export.hf import export_hf
    from gpt2core.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, padded_vocab_size=384, n_layer=1, n_head=2, n_embd=32, n_positions=32))
    out = tmp_path_factory.mktemp("model") / "model"
    export_hf(model, out)
    return out


@pytest.mark.parametrize("damage, expect", [
    (lambda d: truncate(d / "model.safetensors"), "model.safetensors"),
    (lambda d: flip_byte(d / "model.safetensors", 3), "model.safetensors"),  # header length field
    (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors"),
    (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
    (lambda d: (d / "config.json").write_text("{\"n_layer\": "), "config.json"),
    (lambda d: (d / "config.json").write_text("[]"), "config.json"),
    (lambda d: (d / "config.json").unlink(), "config.json"),
])
def test_damaged_model_directory_is_a_one_line_error(exported: Path, tmp_path: Path, damage, expect) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(exported, copy)
    load_hf(copy)  # intact: loads
    damage(copy)
    with pytest.raises(WikiGPTError) as info:
        load_hf(copy)
    assert expect in str(info.value) and "\n" not in str(info.value)


# ---- stale Snakemake locks -------------------------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_dir(tmp_path: Path, owner_pid: int, host: str | None = None, lock_after: bool = False) -> Path:
    sm = tmp_path / ".snakemake"
    (sm / "locks").mkdir(parents=True)
    if not lock_after:
        (sm / "locks" / "0.output.lock").write_text("results/x\n")
    (sm / snakemake_locks.OWNER).write_text(json.dumps({"host": host or socket.gethostname(), "pid": owner_pid,
                                                  "start": process_start_time(owner_pid)}))
    if lock_after:
        time.sleep(0.01)
        (sm / "locks" / "0.output.lock").write_text("results/x\n")
    return sm


def test_lock_of_a_dead_snakemake_is_removed(tmp_path: Path) -> None:
    sm = lock_dir(tmp_path, dead_pid())
    said: list[str] = []
    assert snakemake_locks.clear_stale_locks(sm, said.append)
    assert not list((sm / "locks").iterdir()) and "stale Snakemake lock" in said[0]


def test_lock_of_a_live_snakemake_is_kept(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sm = lock_dir(tmp_path, live.pid)
        assert not snakemake_locks.clear_stale_locks(sm, print)
        assert (sm / "locks" / "0.output.lock").exists()
    finally:
        live.kill()
        live.wait()


def test_lock_of_a_killed_snakemake_not_yet_reaped_is_removed(tmp_path: Path) -> None:
    """kill -9 of Snakemake whose parent has not waited on it yet: a zombie answers kill(pid, 0), but it
    holds nothing any more."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sm = lock_dir(tmp_path, victim.pid)
        victim.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert snakemake_locks.clear_stale_locks(sm, print)
        assert not list((sm / "locks").iterdir())
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("case", ["other host", "lock newer than owner", "no owner record"])
def test_lock_that_cannot_be_proven_stale_is_kept(tmp_path: Path, case: str) -> None:
    sm = lock_dir(tmp_path, dead_pid(), host="elsewhere" if case == "other host" else None,
                  lock_after=case == "lock newer than owner")
    if case == "no owner record":
        (sm / snakemake_locks.OWNER).unlink()
    assert not snakemake_locks.clear_stale_locks(sm, print)
    assert (sm / "locks" / "0.output.lock").exists()


HOOKED_SNAKEFILE = f"""
import sys
sys.path.insert(0, {str(Path(snakemake_locks.__file__).parent)!r})
""" + """from snakemake_locks import clear_stale_locks, record_lock_owner
clear_stale_locks()

onstart:
    record_lock_owner()

rule all:
    input: "b.txt"

rule slow:
    output: "a.txt"
    shell: "sleep 30 && echo a > {output}"

rule fast:
    input: "a.txt"
    output: "b.txt"
    shell: "cp {input} {output}"
"""


@pytest.mark.e2e
@pytest.mark.faults
def test_proposed_workflow_hook_clears_a_sigkilled_lock_and_keeps_a_live_one(tmp_path: Path) -> None:
    """The two lines asked of rules/common.smk, in a tiny real workflow: while Snakemake runs, a second one
    is refused (and the first is unharmed); after a SIGKILL, a plain rerun needs no --unlock."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(HOOKED_SNAKEFILE.replace("sleep 30", "sleep 3"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(snakefile), "--cores", "1"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 60
    while not list((tmp_path / ".snakemake/locks").glob("*")) or not (tmp_path / ".snakemake" /
                                                                       snakemake_locks.OWNER).exists():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
    assert first.wait(timeout=60) == 0 and (tmp_path / "b.txt").read_text() == "a\n"

    snakefile.write_text(HOOKED_SNAKEFILE)
    (tmp_path / "a.txt").unlink()
    (tmp_path / "b.txt").unlink()
    victim = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    while not (tmp_path / ".snakemake" / snakemake_locks.OWNER).exists() or json.loads(
            (tmp_path / ".snakemake" / snakemake_locks.OWNER).read_text())["pid"] != victim.pid:
        assert time.time() < deadline + 60 and victim.poll() is None
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert list((tmp_path / ".snakemake/locks").glob("*.lock"))  # Snakemake left its lock behind
    snakefile.write_text(HOOKED_SNAKEFILE.replace("sleep 30", "sleep 0"))
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "removed a stale Snakemake lock" in rerun.stdout + rerun.stderr
    assert (tmp_path / "b.txt").read_text() == "a\n"


@pytest.fixture(scope="module")
def exported_with_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from gpt2core.export.hf import export_hf
    from gpt2core.model import GPT, GPTConfig

    base = tmp_path_factory.mktemp("model_tok")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["bread and tea in the rain"] * 50, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(base / "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), padded_vocab_size=384, n_layer=1, n_head=2, n_embd=32,
                          n_positions=32))
    export_hf(model, base / "model", base / "tokenizer.json")
    return base / "model"


@pytest.mark.parametrize("consumer", ["generate", "evaluate"])
@pytest.mark.parametrize("damage", ["garbled", "truncated", "empty"])
def test_damaged_tokenizer_in_the_model_directory_is_a_one_line_error(exported_with_tokenizer: Path,
                                                                      tmp_path: Path, consumer: str,
                                                                      damage: str) -> None:
    import shutil

    from gpt2core.eval.encoder import load_encode
    from gpt2core.generate import Generator

    copy = tmp_path / "model"
    shutil.copytree(exported_with_tokenizer, copy)
    load = (lambda: Generator(copy)) if consumer == "generate" else (lambda: load_encode(copy / "tokenizer.json"))
    load()  # intact: loads
    tok = copy / "tokenizer.json"
    tok.write_bytes({"garbled": b'{"version": "1.0", "model": 12}', "truncated": tok.read_bytes()[:500],
                     "empty": b""}[damage])
    with pytest.raises(WikiGPTError) as info:
        load()
    assert "tokenizer.json" in str(info.value) and "\n" not in str(info.value)


# ---- temporaries of a killed writer ----------------------------------------------------------------------
def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    from gpt2core.fsutil import atomic_dir, atomic_path

    dead = dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f".out.bin.tmp-{dead}").write_bytes(b"partial")
        (tmp_path / f".out.bin.old-{dead}").write_bytes(b"previous")
        started = process_start_time(live.pid)
        (tmp_path / f".out.bin.tmp-{live.pid}").write_bytes(b"someone else, still writing (an older tag)")
        (tmp_path / f".out.bin.tmp-{live.pid}.{started}").write_bytes(b"someone else, still writing")
        # a dead writer whose pid a live process took since (pids wrap): its leftovers go all the same
        (tmp_path / f".out.bin.tmp-{live.pid}.{int(started) - 1}").write_bytes(b"partial, pid since reused")
        (tmp_path / f".part.old-{live.pid}.{int(started) - 1}").mkdir()
        (tmp_path / f".other.bin.tmp-{dead}").write_bytes(b"another output's leftover")
        (tmp_path / f".part.tmp-{dead}" / "AA").mkdir(parents=True)
        with atomic_path(tmp_path / "out.bin") as tmp:
            assert tmp.name == f".out.bin.tmp-{os.getpid()}.{process_start_time(os.getpid())}"
            tmp.write_bytes(b"new")
        (tmp_path / "part").mkdir()
        with atomic_dir(tmp_path / "part") as tmp:
            (tmp / "wiki_00").write_text("x")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([f".other.bin.tmp-{dead}", f".out.bin.tmp-{live.pid}", f".out.bin.tmp-{live.pid}.{started}",
                               "out.bin", "part"]), left
    finally:
        live.kill()
        live.wait()
