"""A full disk while a step checkpoint is written (issue 19, item 7): the save raises the OSError (ENOSPC)
itself, leaves nothing under a final name and no temporary behind, keeps the previous checkpoint intact,
and the same save succeeds once there is room. A real full disk: a 1 MiB tmpfs mounted in a private mount
namespace (`unshare -m`, root only; skipped elsewhere), in both checkpoint layouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = r'''
import errno, json, os, sys, warnings
from pathlib import Path
import torch
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint import sharded as dckpt
from gpt2core.model import GPT, GPTConfig
from gpt2core.training.checkpoint import plain as ckpt

disk, layout = Path(sys.argv[1]), sys.argv[2]
warnings.simplefilter("ignore")
cfg = GPTConfig(vocab_size=100, padded_vocab_size=128, n_layer=1, n_head=2, n_embd=16, n_positions=16)
model = GPT(cfg)
opt = torch.optim.AdamW(model.parameters())
model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
opt.step()
save = ckpt.save_checkpoint if layout == "safetensors" else dckpt.save_sharded
root = disk / "ck"
save(root, 1, model, opt, {"model_config": cfg.to_dict(), "tp": 1}, 5)
filler = disk / "filler"
with open(filler, "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
os.truncate(filler, max(0, filler.stat().st_size - 24 * 1024))  # room for part of a checkpoint
out = {}
try:
    save(root, 2, model, opt, {"model_config": cfg.to_dict(), "tp": 1}, 5)
    out["saved"] = True
except OSError as exc:
    out["errno"] = exc.errno
    out["type"] = type(exc).__name__
out["left"] = sorted(p.name for p in root.iterdir())
integrity.verify_checksums(root / "step_0000001")
filler.unlink()
save(root, 2, model, opt, {"model_config": cfg.to_dict(), "tp": 1}, 5)
integrity.verify_checksums(root / "step_0000002")
out["after"] = sorted(p.name for p in root.iterdir())
print(json.dumps(out))
'''


def run_on_a_small_disk(tmp_path: Path, layout: str) -> dict:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs in a private mount namespace")
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)
    script = 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" "$3" "$1" "$4"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(disk), sys.executable,
                           str(tmp_path / "driver.py"), layout], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "mount" in proc.stderr and "driver.py" not in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layout", ["safetensors", "dcp"])
def test_a_full_disk_during_a_checkpoint_save_raises_enospc_and_leaves_nothing_half_written(
        tmp_path: Path, layout: str) -> None:
    out = run_on_a_small_disk(tmp_path, layout)
    assert "saved" not in out, "the checkpoint fit: the disk was not full"
    assert out["errno"] == 28, out  # ENOSPC, raised as itself (the CLI turns it into one line)
    assert out["left"] == ["step_0000001"], out  # no step_0000002, no temporary
    assert out["after"] == ["step_0000001", "step_0000002"], out
