"""What every evaluation needs around the scoring: the device, the model from results/model/, hashes,
a progress bar into the rule's log."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import CONFIG_NAME, TOKENIZER_NAME, WEIGHTS_NAME, load_hf
from gpt2core.fsutil import sha256_file
from gpt2core.model import GPT


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: the GPU when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load_model(model_dir: str | Path, device: torch.device) -> tuple[GPT, dict]:
    """Our GPT in fp32 (evaluation numbers must not depend on precision) and the raw config.json."""
    model_dir = Path(model_dir)
    model = load_hf(model_dir, device=device, dtype=torch.float32)
    config = json.loads((model_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    if not (model_dir / TOKENIZER_NAME).is_file():
        raise WikiGPTError(f"{model_dir / TOKENIZER_NAME}: missing (the model directory has no tokenizer)")
    return model, config


def model_hashes(model_dir: str | Path) -> dict[str, str]:
    model_dir = Path(model_dir)
    return {
        "model_sha256": sha256_file(model_dir / WEIGHTS_NAME),
        "model_config_sha256": sha256_file(model_dir / CONFIG_NAME),
        "tokenizer_sha256": sha256_file(model_dir / TOKENIZER_NAME),
    }


def read_text(path: str | Path) -> str:
    """The whole file as UTF-8 (bytes decoded as the reference does: no newline translation)."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WikiGPTError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise WikiGPTError(f"{path}: cannot read ({exc.strerror})") from None


def check_ids(ids: list[int], vocab_size: int, what: str) -> None:
    if ids and max(ids) >= vocab_size:
        raise WikiGPTError(f"{what}: token id {max(ids)} >= model vocab_size {vocab_size} "
                           "(tokenizer and model do not belong together)")


@contextmanager
def log_stream(log_path: str | Path | None) -> Iterator[TextIO]:
    """The rule's log file (appended) or stderr: where the progress bar and the summary go."""
    if log_path is None:
        yield sys.stderr
        return
    with open(log_path, "a", encoding="utf-8") as fh:
        yield fh
