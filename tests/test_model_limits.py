"""Model sizes read from files are bounded before anything is allocated (issue 19, item 7): an absurd
padded vocabulary in config.json once made load_hf try to allocate 512 TB; now it, and any other size in
config.json, a checkpoint's meta.json or a sharded checkpoint's DCP metadata, is a one-line error naming
the file and key."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import PADDED_KEY, export_hf, load_hf
from gpt2core.export.merge import merged_checkpoint
from gpt2core.model import GPT, GPTConfig
from gpt2core.training.checkpoint import plain as ckpt
from gpt2core.training.checkpoint import sharded as dckpt

CFG = GPTConfig(vocab_size=100, padded_vocab_size=128, n_layer=1, n_head=2, n_embd=16, n_positions=16)


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    export_hf(GPT(CFG), tmp_path / "model", eod_id=99)
    load_hf(tmp_path / "model")  # the untouched export loads
    return tmp_path / "model"


@pytest.mark.parametrize(("key", "value"), [
    (PADDED_KEY, 10**13),  # 10^13 rows x 16 x 4 bytes: the 512 TB of the report (at n_embd 768 and 10^11)
    ("n_layer", 10**9),
    ("n_embd", 2**20),
    ("n_positions", 0),
    ("vocab_size", "100"),
])
def test_an_absurd_size_in_config_json_is_one_line_naming_file_and_key(hf_dir: Path, key: str,
                                                                       value: object) -> None:
    path = hf_dir / "config.json"
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(WikiGPTError, match=rf"^{path}: .*{key}") as info:
        load_hf(hf_dir)
    assert "\n" not in str(info.value)


def test_sizes_that_are_each_allowed_but_too_large_together_are_refused(hf_dir: Path) -> None:
    path = hf_dir / "config.json"
    config = json.loads(path.read_text())
    config.update({"n_layer": 1024, "n_embd": 2**16, "n_head": 2**10})
    path.write_text(json.dumps(config))
    with pytest.raises(WikiGPTError, match=rf"^{path}: a model of [\d,]+ parameters"):
        load_hf(hf_dir)


def test_an_absurd_size_in_a_checkpoints_meta_json_is_refused(tmp_path: Path) -> None:
    model = GPT(CFG)
    step = ckpt.save_checkpoint(tmp_path / "ck", 1, model, torch.optim.AdamW(model.parameters()),
                                {"model_config": CFG.to_dict()}, keep_last=1)
    meta = json.loads((step / "meta.json").read_text())
    meta["model_config"]["padded_vocab_size"] = 10**13
    (step / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(WikiGPTError, match=rf"^{step}/meta\.json: model_config\.padded_vocab_size 10000000000000"):
        merged_checkpoint(step)


def test_absurd_tensor_sizes_in_dcp_metadata_are_refused_before_allocating(tmp_path: Path) -> None:
    model = GPT(CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = dckpt.save_sharded(tmp_path / "ck", 1, model, torch.optim.AdamW(model.parameters()),
                                  {"model_config": CFG.to_dict(), "tp": 1}, keep_last=1)
    merged_checkpoint(step)  # the untouched checkpoint merges
    path = step / "dcp" / ".metadata"
    metadata = pickle.loads(path.read_bytes())
    metadata.state_dict_metadata["model.wte.weight"].size = torch.Size([10**13, 16])
    path.write_bytes(pickle.dumps(metadata))
    with pytest.raises(WikiGPTError, match=rf"^{path}: its tensors would take [\d,]+ bytes"):
        merged_checkpoint(step)
