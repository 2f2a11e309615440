"""Mistakes the config shows without any data are caught when the DAG is built: `snakemake -n` already stops,
nothing runs, and the one line names the key or the file. And `train: {tp: 2}` alone is a layout, not an error."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import run_snakemake, tiny_config, write_config


def _dry_run_error(tmp_path: Path, config: dict) -> str:
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr and "Building DAG" not in proc.stderr + proc.stdout, proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize(("section", "values", "line"), [
    ("model", {"seq_len": 256}, "error: config: model.seq_len 256 exceeds model.n_positions 128"),
    ("model", {"n_embd": 130}, "error: config: model.n_embd 130 is not divisible by model.n_head 4"),
    ("data", {"split": [0, 0, 0]}, "error: config: data.split [0, 0, 0]: the train/valid/test weights add up to 0"),
    ("generate", {"prompts": []},
     "error: config: generate.prompts is empty and generate.prompts_file names no file: give rule generate a prompt"),
    ("tokenizer", {"kind": "gpt2", "encoder": {"url": "/nowhere/encoder.json"}},
     "error: config: tokenizer.kind gpt2 needs tokenizer.vocab.url"),
])
def test_cross_key_mistakes_stop_the_dry_run(tmp_path: Path, section: str, values: dict, line: str) -> None:
    assert _dry_run_error(tmp_path, tiny_config(**{section: values})) == line


@pytest.mark.parametrize(("wiki103", "line"), [
    ({"seq_len": 200}, "error: config: eval.wiki103.seq_len 200 exceeds model.n_positions 128"),
    ({"overlap": 129}, "error: config: eval.wiki103.overlap 129 exceeds eval.wiki103.seq_len 128 "
                       "(0: model.n_positions)"),
    ({"seq_len": 64, "overlap": 65}, "error: config: eval.wiki103.overlap 65 exceeds eval.wiki103.seq_len 64"),
])
def test_evaluation_windows_that_cannot_fit_stop_the_dry_run(tmp_path: Path, wiki103: dict, line: str) -> None:
    config = tiny_config()
    config["eval"]["wiki103"].update(wiki103)
    assert _dry_run_error(tmp_path, config) == line


@pytest.mark.parametrize("where", ["corpus", "eval", "link"])
def test_a_local_source_that_is_not_there_stops_the_dry_run(tmp_path: Path, where: str) -> None:
    config, missing = tiny_config(), str(tmp_path / "nowhere" / "dump.xml.bz2")
    if where == "eval":
        config["eval"]["lambada"]["source"] = {"url": missing}
        expect = f"error: config: eval.lambada.source: {missing}: no such file"
    else:
        config["corpora"][0]["sources"] = [{"url": missing, **({"link": True} if where == "link" else {})}]
        expect = f"error: config: corpus 'samplewiki' source: {missing}: no such file"
    assert _dry_run_error(tmp_path, config) == expect


def test_a_copied_source_removed_after_its_download_keeps_its_results(tmp_path: Path) -> None:
    """The copy is the run's input from then on: deleting the original is not a config error."""
    original = tmp_path / "in" / "samplewiki-pages-articles.xml.bz2"
    original.parent.mkdir()
    config = tiny_config()
    original.write_bytes(Path(config["corpora"][0]["sources"][0]["url"]).read_bytes())
    config["corpora"][0]["sources"] = [{"url": str(original)}]
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "data/downloads/samplewiki/samplewiki-pages-articles.xml.bz2")
    original.unlink()
    run_snakemake(tmp_path, "-n")


def _planned_train_args(tmp_path: Path, train: dict) -> list[str]:
    write_config(tmp_path, tiny_config(train=train))
    out = run_snakemake(tmp_path, "-n", "-p", "results/train/done.json").stdout
    start = out.index("CMD=(")
    return shlex.split(out[start:out.index(' echo "+ ', start)])


@pytest.mark.parametrize(("train", "nproc", "dp"), [
    ({"tp": 2}, "2", 1),  # was: "train.nproc_per_node x train.nnodes = 1 x 1 = 1 processes, but ... 2 x 1 = 2"
    ({"tp": 2, "dp": 2}, "4", 2),
    ({"tp": 2, "nproc_per_node": 4}, "4", 2),  # dp from the process count over tp
])
def test_processes_follow_from_the_layout(tmp_path: Path, train: dict, nproc: str, dp: int) -> None:
    args = _planned_train_args(tmp_path, train)
    assert args[args.index("--nproc-per-node") + 1] == nproc
    assert json.loads(args[args.index("--train") + 1])["dp"] == dp


def test_a_real_contradiction_is_still_an_error(tmp_path: Path) -> None:
    line = _dry_run_error(tmp_path, tiny_config(train={"tp": 2, "dp": 1, "nproc_per_node": 4}))
    assert line == ("error: config: train.nproc_per_node x train.nnodes = 4 x 1 = 4 processes, but train.tp x "
                    "train.dp = 2 x 1 = 2")
