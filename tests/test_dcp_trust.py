"""A sharded (DCP) checkpoint cannot run code when training resumes from it (issue 19, item 1).

DCP keeps every non-tensor entry (the optimizer's param_groups: lr, betas, eps, ...) as a pickle inside the
`.distcp` files, and torch's default load planner unpickles them with weights_only=False. The attack here is
the one a writer of the checkpoint directory has: append a pickle with a __reduce__ payload to a `.distcp`
file, point the item's storage entry in `.metadata` at it (only DCP's own classes, so the restricted
metadata check passes) and rewrite checksums.json. Resuming must refuse in one line naming the file, and the
payload's marker file must never appear: in process, through the one-process CLI and in a torchrun dp=2 run."""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from conftest import REPO
from test_train import make_trainer
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import BytesStorageMetadata

from gpt2core.errors import WikiGPTError
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint import plain as ckpt
from gpt2core.training.checkpoint import sharded as dckpt
from gpt2core.training.checkpoint.dcp_read import UnsafeCheckpointItem, safe_load


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant_payload(dcp_dir: Path, marker: Path) -> list[str]:
    """Make every non-tensor item of `dcp_dir` a pickle that touches `marker`; return their keys."""
    metadata_path = dcp_dir / ".metadata"
    metadata = pickle.loads(metadata_path.read_bytes())  # our own test file: plain pickle is fine here
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    payload = buffer.getvalue()
    keys = [k for k, md in metadata.state_dict_metadata.items() if isinstance(md, BytesStorageMetadata)]
    assert keys, "the checkpoint holds no pickled item: this attack checks nothing"
    for index, info in list(metadata.storage_data.items()):
        if index.fqn in keys:
            target = dcp_dir / info.relative_path
            offset = target.stat().st_size
            with target.open("ab") as f:
                f.write(payload)
            metadata.storage_data[index] = _StorageInfo(info.relative_path, offset, len(payload),
                                                         info.transform_descriptors)
    metadata_path.write_bytes(pickle.dumps(metadata))
    integrity.check_dcp_metadata(metadata_path)  # the metadata alone is innocent
    return keys


def rewrite_checksums(step: Path) -> None:
    (step / integrity.CHECKSUMS).unlink()
    integrity.write_checksums(step)
    integrity.verify_checksums(step)


def optimizer_state(marker_dir: Path) -> tuple[dict, Path]:
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    directory = marker_dir / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"optim": opt.state_dict()}, checkpoint_id=str(directory), no_dist=True)
    return {"optim": opt.state_dict()}, directory


def test_plain_dcp_load_runs_the_payload_and_safe_load_refuses_it(tmp_path: Path) -> None:
    state, directory = optimizer_state(tmp_path)
    marker = tmp_path / "PWNED"
    keys = plant_payload(directory, marker)
    with pytest.raises(UnsafeCheckpointItem) as info:
        safe_load(state, directory, no_dist=True)
    message = str(info.value)
    assert "\n" not in message and "refusing to unpickle item" in message
    assert any(f"item {key} (" in message for key in keys)
    assert f"{directory}/__0_0.distcp" in message and "it names getattr" in message
    assert not marker.exists(), "safe_load ran code from the checkpoint"
    with warnings.catch_warnings():  # the attack is real: torch's default planner runs it
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=str(directory), no_dist=True)
    assert marker.exists()


def test_safe_load_restores_plain_param_groups(tmp_path: Path) -> None:
    state, directory = optimizer_state(tmp_path)
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 4).parameters(), lr=0.5, betas=(0.1, 0.2))
    target = {"optim": fresh.state_dict()}
    safe_load(target, directory, no_dist=True)
    groups = target["optim"]["param_groups"]
    assert groups[0]["lr"] == 1e-3 and tuple(groups[0]["betas"]) == (0.9, 0.999)


def test_every_dcp_load_goes_through_the_weights_only_planner_and_the_restricted_reader() -> None:
    bad = []
    for path in sorted([*(REPO / "gpt2core").rglob("*.py"), *(REPO / "workflow/scripts").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("dcp.load", "load_state_dict", "torch.distributed.checkpoint.load"):
                if not {"planner", "storage_reader"} <= {k.arg for k in node.keywords}:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} {name} without our planner and reader")
            if name.endswith("FileSystemReader") and name != "RestrictedFileSystemReader":
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} {name} (its read_metadata is pickle.load)")
    assert not bad, bad


def sharded_step(tmp_path: Path) -> tuple[Path, dict]:
    """A one-process run's step-3 checkpoint written in the sharded (DCP) layout."""
    trainer = make_trainer(tmp_path, iters=6, save_interval=3)
    trainer.start()
    for _ in range(3):
        trainer.step()
    meta = {**trainer.meta_base, "scaler": trainer.scaler.state_dict(),
            "state": {"iteration": 3, "lr_step": 3, "tokens": 3 * trainer.tokens_per_iter, "skipped": 0,
                      "wall_time": 0.0, "last_loss": None, "last_valid": None}}
    trainer.metrics.close()
    root = trainer.paths.checkpoints
    for old in ckpt.list_checkpoints(root):
        old.rename(old.with_name("." + old.name))  # leave only the sharded one to resume from
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = dckpt.save_sharded(root, 3, trainer.raw_model, trainer.optimizer, meta, keep_last=2)
    return step, meta


def test_resuming_a_planted_sharded_checkpoint_refuses_in_one_line(tmp_path: Path) -> None:
    step, _ = sharded_step(tmp_path)
    clean = make_trainer(tmp_path, iters=6, save_interval=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert clean.start() == 3  # the sharded checkpoint resumes in a one-process run
    clean.metrics.close()
    marker = tmp_path / "PWNED"
    plant_payload(step / "dcp", marker)
    rewrite_checksums(step)
    victim = make_trainer(tmp_path, iters=6, save_interval=3)
    with pytest.raises(WikiGPTError, match=rf"{step}/dcp/__0_0\.distcp: refusing to unpickle item optim\.param_groups\.\S+ \(it names getattr"):
        victim.start()
    assert not marker.exists()


def test_the_trainer_cli_refuses_a_planted_checkpoint_in_one_line(tmp_path: Path) -> None:
    from test_train_helpers import tiny_sections

    step, _ = sharded_step(tmp_path)
    marker = tmp_path / "PWNED"
    plant_payload(step / "dcp", marker)
    rewrite_checksums(step)
    model, train = tiny_sections(iters=6, save_interval=3)  # what sharded_step's trainer ran
    cmd = [sys.executable, "-m", "gpt2core.train", "--manifest", str(tmp_path / "manifest.json"),
           "--model", json.dumps(model), "--train", json.dumps(train), "--data-seed", "1234",
           "--checkpoints", str(step.parent),
           "--done", "out/done.json", "--metrics", "out/metrics.jsonl"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing to unpickle item optim.param_groups." in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not marker.exists()


@pytest.mark.e2e
def test_a_dp2_resume_of_a_planted_checkpoint_refuses_on_every_rank(tmp_path: Path) -> None:
    from test_parallel_train import command, env, train
    from test_train_helpers import write_manifest

    write_manifest(tmp_path)
    fast = {"iters": 4, "save_interval": 2, "eval_interval": 2}
    train(tmp_path, "dp2", nproc=2, dp=2, **fast)
    run = tmp_path / "checkpoints" / "victim"
    run.mkdir(parents=True)
    step = run / "step_0000002"
    shutil.copytree(tmp_path / "checkpoints/dp2/step_0000002", step)
    shutil.copy(tmp_path / "checkpoints/dp2/metrics.jsonl", run / "metrics.jsonl")
    marker = tmp_path / "PWNED"
    plant_payload(step / "dcp", marker)
    rewrite_checksums(step)
    proc = subprocess.run(command(tmp_path, "victim", 2, dp=2, **fast), cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "refusing to unpickle item optim.param_groups." in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists(), "a rank ran code from the checkpoint"


def test_dcp_metadata_is_read_by_the_restricted_unpickler_and_names_only_files_inside(tmp_path: Path) -> None:
    """DCP itself would pickle.load `.metadata` after our check (a window to swap the file); our reader
    unpickles it restricted, once, and refuses a shard file named outside the checkpoint directory."""
    from gpt2core.training.checkpoint.dcp_read import RestrictedFileSystemReader

    state, directory = optimizer_state(tmp_path)
    marker = tmp_path / "PWNED"
    path = directory / ".metadata"
    good = path.read_bytes()
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(integrity.IntegrityError, match="refusing to unpickle"):
        RestrictedFileSystemReader(str(directory)).read_metadata()
    with pytest.raises(integrity.IntegrityError, match=rf"^{path}: refusing to unpickle"):
        safe_load(state, directory, no_dist=True)
    assert not marker.exists()
    metadata = pickle.loads(good)
    for index, info in list(metadata.storage_data.items()):
        metadata.storage_data[index] = _StorageInfo("../elsewhere.distcp", info.offset, info.length,
                                                     info.transform_descriptors)
    path.write_bytes(pickle.dumps(metadata))
    with pytest.raises(WikiGPTError, match=r"names shard file '\.\./elsewhere\.distcp' outside its directory"):
        safe_load(state, directory, no_dist=True)
