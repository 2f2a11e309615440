"""Hugging Face interop: transformers loads our export with equal logits; export -> import round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import export_hf, load_hf
from gpt2core.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")


def tiny_model(seed: int = 0, vocab: int = 301) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig.padded(vocab, multiple=128, n_positions=32, n_layer=2, n_head=4, n_embd=32)
    model = GPT(cfg)
    with torch.no_grad():  # perturb biases and LayerNorms so that a wrong mapping cannot hide behind zeros
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def write_tokenizer(path: Path, eod: int) -> Path:
    path.write_text(json.dumps({"added_tokens": [{"id": eod, "content": "<|endoftext|>"}],
                                "model": {"vocab": {}}}), encoding="utf-8")
    return path


def test_transformers_loads_export_with_equal_logits(tmp_path: Path) -> None:
    model = tiny_model()
    export_hf(model, tmp_path / "m", write_tokenizer(tmp_path / "tok.json", 300))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "m").eval()
    assert hf.config.eos_token_id == 300
    idx = torch.randint(0, 301, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx)[..., :301]
        theirs = hf(idx).logits
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert (tmp_path / "m" / "tokenizer.json").read_bytes() == (tmp_path / "tok.json").read_bytes()


def test_round_trip_restores_padding(tmp_path: Path) -> None:
    model = tiny_model(seed=3)
    export_hf(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab_size"] == 301 and config["wikigpt_padded_vocab_size"] == 384
    assert config["wikigpt_vocab_multiple"] == 128
    assert load_file(tmp_path / "m" / "model.safetensors")["transformer.wte.weight"].shape == (301, 32)
    back = load_hf(tmp_path / "m")
    assert back.config == model.config
    assert back.lm_head.weight is back.wte.weight
    sd, sd_back = model.state_dict(), back.state_dict()
    for key, value in sd.items():
        if key in ("wte.weight", "lm_head.weight"):
            torch.testing.assert_close(sd_back[key][:301], value[:301], atol=0, rtol=0)
        else:
            torch.testing.assert_close(sd_back[key], value, atol=0, rtol=0)
    idx = torch.randint(0, 301, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(back(idx), model(idx), atol=0, rtol=0)
    assert torch.isneginf(back(idx)[..., 301:]).all()


def test_load_hf_bf16_on_request(tmp_path: Path) -> None:
    export_hf(tiny_model(), tmp_path / "m")
    assert load_hf(tmp_path / "m", dtype=torch.bfloat16).wte.weight.dtype == torch.bfloat16


def test_export_replaces_whole_directory(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "stale.bin").write_text("old")
    export_hf(tiny_model(), tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["no_dir", "no_config", "no_weights", "bad_json", "missing_tensor",
                                    "wrong_shape", "truncated", "not_gpt2"])
def test_broken_directory_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "m"
    export_hf(tiny_model(), d)
    weights, config = d / "model.safetensors", d / "config.json"
    if damage == "no_dir":
        d = tmp_path / "absent"
    elif damage == "no_config":
        config.unlink()
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "bad_json":
        config.write_text("{not json")
    elif damage == "not_gpt2":
        config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "llama"}))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        sd = load_file(weights)
        if damage == "missing_tensor":
            del sd["transformer.h.1.mlp.c_fc.bias"]
        else:
            sd["transformer.wpe.weight"] = sd["transformer.wpe.weight"][:16].contiguous()
        save_file(sd, weights)
    with pytest.raises(WikiGPTError) as err:
        load_hf(d)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message
    named = {"missing_tensor": "missing tensor 'transformer.h.1.mlp.c_fc.bias'",
             "wrong_shape": "transformer.wpe.weight has shape (16, 32)", "no_config": "config.json",
             "bad_json": "config.json", "not_gpt2": "config.json", "no_weights": "model.safetensors",
             "truncated": "model.safetensors"}.get(damage)
    assert named is None or named in message, message  # the damaged item itself is named


def test_mismatched_config_names_the_tensor(tmp_path: Path) -> None:
    export_hf(tiny_model(), tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "n_embd": 64}))
    with pytest.raises(WikiGPTError, match="transformer.wte.weight has shape"):
        load_hf(tmp_path / "m")
