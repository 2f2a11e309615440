"""Export to and import from the Hugging Face `transformers` GPT-2 layout (config.json + model.safetensors).

Why: evaluation, generation and any outside user read the trained model through this one layout, so a
`transformers.GPT2LMHeadModel.from_pretrained(dir)` gives the same logits as our own GPT. The padded
vocabulary rows are trimmed on export (HF sees the real vocabulary) and restored on import from the
`wikigpt_padded_vocab_size` key we store in config.json, so readers never recompute the padding.

HF's GPT-2 uses Conv1D layers whose weights are the transpose of our nn.Linear weights; q, k, v are
stacked in the same order on the output dimension in both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir, read_limited
from gpt2core.model import GPT, GPTConfig
from gpt2core.model_limits import check_model_size

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"
EOD_TOKEN = "<|endoftext|>"
PADDED_KEY = "wikigpt_padded_vocab_size"
MULTIPLE_KEY = "wikigpt_vocab_multiple"

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_BLOCK_KEYS = (
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
    "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias",
)
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def eod_id_from_tokenizer(tokenizer_json: str | Path) -> int | None:
    """The id of `<|endoftext|>` in a `tokenizers` JSON file (added tokens first, then the BPE vocab)."""
    from gpt2core.data.encoder import MAX_TOKENIZER_BYTES

    path = Path(tokenizer_json)
    try:
        data = json.loads(read_limited(path, MAX_TOKENIZER_BYTES, "a tokenizer file"))
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, nesting past Python's stack
        raise WikiGPTError(f"{path}: cannot read tokenizer JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise WikiGPTError(f"{path}: not a tokenizers JSON object")
    for tok in data.get("added_tokens", []):
        if tok.get("content") == EOD_TOKEN:
            return int(tok["id"])
    vocab = (data.get("model") or {}).get("vocab") or {}
    return int(vocab[EOD_TOKEN]) if isinstance(vocab, dict) and EOD_TOKEN in vocab else None


def hf_config(cfg: GPTConfig, eod_id: int | None, dtype: torch.dtype) -> dict:
    """The transformers GPT2Config dict for our model, plus our padding keys."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_ctx": cfg.n_positions,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eod_id,
        "eos_token_id": eod_id,
        "dtype": _DTYPE_NAMES.get(dtype, "float32"),
        PADDED_KEY: cfg.padded_vocab_size,
        MULTIPLE_KEY: cfg.vocab_multiple,
    }


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict in HF names, padded rows trimmed, Conv1D weights transposed, lm_head left tied."""
    cfg = model.config
    sd = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    out = {
        "transformer.wte.weight": sd["wte.weight"][: cfg.vocab_size],
        "transformer.wpe.weight": sd["wpe.weight"],
        "transformer.ln_f.weight": sd["ln_f.weight"],
        "transformer.ln_f.bias": sd["ln_f.bias"],
    }
    for i in range(cfg.n_layer):
        for key in _BLOCK_KEYS:
            t = sd[f"h.{i}.{key}"]
            out[f"transformer.h.{i}.{key}"] = t.t() if key in _CONV1D else t
    return {k: v.contiguous().clone() for k, v in out.items()}


def export_hf(model: GPT, out_dir: str | Path, tokenizer_json: str | Path | None = None,
              eod_id: int | None = None) -> None:
    """Write `out_dir` (config.json, model.safetensors, tokenizer.json if given) atomically, as a whole."""
    if tokenizer_json is not None and eod_id is None:
        eod_id = eod_id_from_tokenizer(tokenizer_json)
    state = to_hf_state_dict(model)
    dtype = next(iter(state.values())).dtype
    config = hf_config(model.config, eod_id, dtype)
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if tokenizer_json is not None:
            shutil.copyfile(tokenizer_json, tmp / TOKENIZER_NAME)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise WikiGPTError(f"{path}: missing (not a Hugging Face GPT-2 model directory)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "gpt2":
        raise WikiGPTError(f"{path}: model_type is not 'gpt2'")
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise WikiGPTError(f"{path}: missing or invalid {key!r}")
    if cfg.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise WikiGPTError(f"{path}: activation_function {cfg['activation_function']!r} is not GELU tanh")
    if cfg.get("n_inner") not in (None, 4 * cfg["n_embd"]):
        raise WikiGPTError(f"{path}: n_inner {cfg['n_inner']} is not 4 * n_embd")
    for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("tie_word_embeddings", True)):
        if cfg.get(key, want) != want:
            raise WikiGPTError(f"{path}: {key}={cfg[key]} is not supported")
    return cfg


def gpt_config_from_hf(cfg: dict, path: Path) -> GPTConfig:
    """Our GPTConfig from an HF config dict; the padded vocabulary comes from our stored key if present."""
    padded = cfg.get(PADDED_KEY, cfg["vocab_size"])
    check_model_size({**{k: cfg[k] for k in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")},
                      "padded_vocab_size": padded}, path, {"padded_vocab_size": PADDED_KEY})
    try:
        return GPTConfig(
            vocab_size=cfg["vocab_size"], padded_vocab_size=int(padded), n_positions=cfg["n_positions"],
            n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
            layer_norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
            vocab_multiple=int(cfg.get(MULTIPLE_KEY, 1)),
        )
    except ValueError as exc:
        raise WikiGPTError(f"{path}: {exc}") from None


def _expected_shapes(c: GPTConfig) -> dict[str, tuple[int, ...]]:
    C = c.n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (c.vocab_size, C), "transformer.wpe.weight": (c.n_positions, C),
        "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,),
    }
    block = {
        "ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C), "attn.c_attn.bias": (3 * C,),
        "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
        "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (4 * C, C),
        "mlp.c_proj.bias": (C,),
    }
    for i in range(c.n_layer):
        shapes.update({f"transformer.h.{i}.{k}": s for k, s in block.items()})
    return shapes


def _read_weights(path: Path, cfg: GPTConfig) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WikiGPTError(f"{path}: missing (model directory is incomplete)")
    expected = _expected_shapes(cfg)
    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            missing = sorted(set(expected) - keys)
            if missing:
                raise WikiGPTError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing in all)")
            tensors = {k: fh.get_tensor(k) for k in expected}
            lm_head = fh.get_tensor("lm_head.weight") if "lm_head.weight" in keys else None
    except (SafetensorError, OSError) as exc:
        raise WikiGPTError(f"{path}: unreadable safetensors file ({exc})") from None
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise WikiGPTError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, config.json says {shape}")
    if lm_head is not None and not torch.equal(lm_head, tensors["transformer.wte.weight"]):
        raise WikiGPTError(f"{path}: lm_head.weight differs from transformer.wte.weight (untied head)")
    return tensors


def from_hf_state_dict(tensors: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """HF names -> ours: Conv1D weights transposed back, the embedding padded with zero rows."""
    wte = tensors["transformer.wte.weight"]
    pad = wte.new_zeros(cfg.padded_vocab_size - cfg.vocab_size, wte.shape[1])
    sd = {
        "wte.weight": torch.cat([wte, pad]), "wpe.weight": tensors["transformer.wpe.weight"],
        "ln_f.weight": tensors["transformer.ln_f.weight"], "ln_f.bias": tensors["transformer.ln_f.bias"],
    }
    for i in range(cfg.n_layer):
        for key in _BLOCK_KEYS:
            t = tensors[f"transformer.h.{i}.{key}"]
            sd[f"h.{i}.{key}"] = t.t() if key in _CONV1D else t
    sd["lm_head.weight"] = sd["wte.weight"]
    return sd


def load_hf(model_dir: str | Path, device: str | torch.device = "cpu",
            dtype: torch.dtype = torch.float32) -> GPT:
    """Our GPT (eval mode) from an HF GPT-2 directory, padding restored; a clear error if anything is off."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise WikiGPTError(f"{model_dir}: model directory does not exist")
    cfg = gpt_config_from_hf(_read_config(model_dir / CONFIG_NAME), model_dir / CONFIG_NAME)
    tensors = _read_weights(model_dir / WEIGHTS_NAME, cfg)
    with torch.device("meta"):
        model = GPT(cfg)
    model.load_state_dict(from_hf_state_dict(tensors, cfg), assign=True)
    model.lm_head.weight = model.wte.weight  # assign=True replaced the tied parameter; tie again
    return model.to(device=device, dtype=dtype).eval()
