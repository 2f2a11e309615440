"""Helpers shared by the evaluation tests (no tests here): a GPT-2 BPE tokenizer.json built from the reference
files, tiny random GPTs exported in the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from gpt2core.export.hf import export_hf
from gpt2core.model import GPT, GPTConfig


def gpt2_tokenizer_json(encoder_json: Path, vocab_bpe: Path, out: Path) -> Path:
    """OpenAI's GPT-2 BPE as a `tokenizers` JSON file (byte-level, no prefix space, EOD special)."""
    tok = Tokenizer(models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok.save(str(out))
    return out


def tiny_gpt(vocab_size: int, seed: int = 0, n_positions: int = 64, n_layer: int = 2, n_embd: int = 32,
             n_head: int = 4) -> GPT:
    """A random GPT with perturbed biases/LayerNorms (so a wrong mapping cannot hide behind zeros)."""
    torch.manual_seed(seed)
    cfg = GPTConfig.padded(vocab_size, multiple=128, n_positions=n_positions, n_layer=n_layer, n_head=n_head,
                           n_embd=n_embd)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def export_tiny(model: GPT, out_dir: Path, tokenizer_json: Path) -> Path:
    export_hf(model, out_dir, tokenizer_json)
    return out_dir


def small_bpe_json(text: str, out: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on `text` (the same kind the default pipeline trains), EOD special."""
    from tokenizers import trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    tok.save(str(out))
    return out
