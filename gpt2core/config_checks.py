"""Rules between config keys, and local files the config names, that can be decided before any job runs.

The workflow calls these when it builds the DAG (rules/common.smk), so `snakemake -n` already stops in one
line; the stages keep their own checks as a second line of defence (the trainer calls check_model, the
evaluation its own seq_len and overlap checks, generation its prompts check).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from gpt2core.data.download import is_remote, local_path
from gpt2core.errors import WikiGPTError


def check_model(model: dict) -> None:
    """The model's shape: positions for every token of a window, whole heads."""
    if model["seq_len"] > model["n_positions"]:
        raise WikiGPTError(f"config: model.seq_len {model['seq_len']} exceeds model.n_positions "
                           f"{model['n_positions']}")
    if model["n_embd"] % model["n_head"]:
        raise WikiGPTError(f"config: model.n_embd {model['n_embd']} is not divisible by model.n_head "
                           f"{model['n_head']}")


def check_evaluation(model: dict, wiki103: dict) -> None:
    """WikiText-103 windows must fit the model's positions and hold their overlap (0 = n_positions)."""
    if not wiki103.get("source"):
        return
    seq_len = wiki103["seq_len"] or model["n_positions"]
    if wiki103["seq_len"] > model["n_positions"]:
        raise WikiGPTError(f"config: eval.wiki103.seq_len {wiki103['seq_len']} exceeds model.n_positions "
                           f"{model['n_positions']}")
    if wiki103["overlap"] > seq_len:
        raise WikiGPTError(f"config: eval.wiki103.overlap {wiki103['overlap']} exceeds eval.wiki103.seq_len "
                           f"{seq_len}{' (0: model.n_positions)' if not wiki103['seq_len'] else ''}")


def check_generation(generate: dict) -> None:
    if not generate["prompts"] and not generate["prompts_file"]:
        raise WikiGPTError("config: generate.prompts is empty and generate.prompts_file names no file: "
                           "give rule generate a prompt")


def check_cross_keys(config: dict) -> None:
    """Every rule between keys that needs no data (the schema checks each key alone)."""
    if sum(config["data"]["split"]) <= 0:  # the schema checks three weights >= 0; tokenize checks this too
        raise WikiGPTError(f"config: data.split {config['data']['split']}: the train/valid/test weights add up to 0")
    check_model(config["model"])
    check_evaluation(config["model"], config["eval"]["wiki103"])
    check_generation(config["generate"])


def check_local_source(source: dict, what: str, downloaded: str | Path) -> None:
    """A local source that is not there, and was never downloaded, stops the run before any job: the
    download job would only fail on it later. A copy made before the file went away keeps its results."""
    url = source["url"]
    if is_remote(url) or urlparse(url).scheme not in ("", "file"):  # the download names a bad scheme
        return
    if local_path(url).exists() or Path(downloaded).exists():
        return
    raise WikiGPTError(f"config: {what}: {url}: no such file")
