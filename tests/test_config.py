"""Config: presets validate against the schema; dump globs expand through the checksum file at DAG time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake, tiny_config, write_config
from jsonschema import Draft202012Validator

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
PRESETS = sorted((REPO / "configs").glob("*.yaml")) + [REPO / "config.yaml"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_is_valid(preset: Path) -> None:
    config = yaml.safe_load(preset.read_text(encoding="utf-8"))
    if "corpora" not in config:  # an overlay, used on top of the reference run
        base = yaml.safe_load((REPO / "configs/gpt2-small-enwiki.yaml").read_text(encoding="utf-8"))
        config = {**base, **{k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in config.items()}}
    errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(config)]
    assert errors == []


@pytest.mark.e2e
def test_dump_glob_expands_to_parts_from_checksum_file(tmp_path: Path) -> None:
    sums = tmp_path / "enwiki-latest-sha1sums.txt"
    sums.write_text(
        f"{'a' * 40}  enwiki-latest-pages-articles1.xml-p1p41242.bz2\n"
        f"{'b' * 40}  enwiki-latest-pages-articles2.xml-p41243p151573.bz2\n"
        f"{'c' * 40}  enwiki-latest-pages-articles.xml.bz2\n",
        encoding="utf-8",
    )
    source = {"url": f"file://{tmp_path}/enwiki-latest-pages-articles[0-9]*.xml-p*.bz2",
              "checksums_url": str(sums)}
    for part in ("1.xml-p1p41242", "2.xml-p41243p151573"):  # a local source must be there to plan the run
        (tmp_path / f"enwiki-latest-pages-articles{part}.bz2").write_bytes(b"")
    config = tiny_config()
    config["corpora"][0]["sources"] = [source]
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=True)
    text = proc.stdout + proc.stderr
    assert "data/extract/samplewiki/enwiki-latest-pages-articles1.xml-p1p41242.bz2" in text
    assert "data/extract/samplewiki/enwiki-latest-pages-articles2.xml-p41243p151573.bz2" in text
    assert "data/extract/samplewiki/enwiki-latest-pages-articles.xml.bz2" not in text


def test_unknown_key_is_one_line_error(tmp_path: Path) -> None:
    config = tiny_config()
    config["train"]["itres"] = 5
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "error: config: unknown key 'itres' in train" in proc.stderr


def test_gpt2_encoder_too_large_for_uint16_fails_before_any_job(tmp_path: Path) -> None:
    """kind bpe is covered in test_data_errors; kind gpt2 with a local encoder.json of another vocabulary."""
    import json

    config = tiny_config()
    config["data"]["dtype"] = "uint16"
    encoder = tmp_path / "big-encoder.json"
    encoder.write_text(json.dumps({f"t{i}": i for i in range(65537)}), encoding="utf-8")
    config["tokenizer"] = {"kind": "gpt2", "encoder": {"url": str(encoder)}, "vocab": {"url": str(encoder)}}
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    expect = f"error: config: {encoder}: vocabulary 65537 does not fit data.dtype uint16"
    assert proc.returncode != 0 and expect in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "data").exists()
    config["data"]["dtype"] = "uint32"
    write_config(tmp_path, config)
    assert run_snakemake(tmp_path, "-n", check=False).returncode == 0


@pytest.mark.parametrize("setting", [False, True, "default", "max-autotune", "reduce-overhead"])
def test_train_compile_takes_a_flag_or_a_torch_compile_mode(setting: bool | str) -> None:
    from gpt2core.training.step import compile_options

    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["train"]["compile"] = setting
    assert [e.message for e in Draft202012Validator(SCHEMA).iter_errors(config)] == []
    expected = {False: None, True: {}, "default": {}}.get(setting, {"mode": setting})
    assert compile_options(setting) == expected


def test_unknown_compile_mode_is_refused_before_any_job(tmp_path: Path) -> None:
    config = tiny_config()
    config["train"]["compile"] = "fastest"
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "error: config:" in proc.stderr and "fastest" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "data").exists()


def test_half_residual_without_a_16_bit_precision_is_refused_before_any_job(tmp_path: Path) -> None:
    config = tiny_config()
    config["train"]["half_residual"] = True  # the embedded default trains in fp32
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "error: config: train.half_residual keeps the residual stream in the 16-bit autocast dtype; it needs " \
           "precision fp16 or bf16, not fp32" in proc.stderr, proc.stderr[-2000:]
    config["train"]["precision"] = "bf16"
    write_config(tmp_path, config)
    assert run_snakemake(tmp_path, "-n", check=False).returncode == 0


@pytest.mark.e2e
def test_one_gpu_overlay_changes_only_training_settings_on_top_of_a_base(tmp_path: Path) -> None:
    """`--configfile base overlay` deep-merges: the overlay's model/train keys win, the base's others stay,
    and the planned train command carries them (dry run; the real base needs the network to plan)."""
    import json
    import shlex

    config = tiny_config(train={"threads": 3})
    write_config(tmp_path, config)
    overlay = REPO / "configs/gpt2-small-1gpu.yaml"
    proc = run_snakemake(tmp_path, "-n", "-p", "--configfile", str(tmp_path / "config.yaml"), str(overlay),
                         "--", "results/train/done.json")
    line = next(ln for ln in proc.stdout.splitlines() if "-m gpt2core.train" in ln)
    args = shlex.split(line[line.index("-m gpt2core.train"):])
    model, train = json.loads(args[args.index("--model") + 1]), json.loads(args[args.index("--train") + 1])
    assert (model["seq_len"], model["n_positions"], model["dropout"]) == (1024, 1024, 0.0)
    assert model["n_layer"] == config["model"]["n_layer"]  # from the base
    assert (train["precision"], train["compile"], train["micro_batch"], train["lr"], train["beta2"]) == \
        ("bf16", "max-autotune", 32, 6.0e-4, 0.95)
    assert (train["half_residual"], train["grad_accum"], train["warmup"]) == (True, 16, 172)
    assert train["micro_batch"] * train["grad_accum"] * model["seq_len"] == 524_288  # llm.c's tokens a step
    assert train["threads"] == 3  # from the base
    assert "checkpoints/gpt2-small-1gpu" in line


@pytest.mark.parametrize("case", ["same file name", "same corpus name", "url without a file name"])
def test_ambiguous_names_are_one_line_errors_before_any_job(tmp_path: Path, case: str) -> None:
    """Parts are named by file name and corpora by name: two sources stored as one name would read one part
    twice and the other never, so that (and the other naming errors) stops the run in one line."""
    config = tiny_config()
    corpus = config["corpora"][0]
    if case == "same file name":
        corpus["sources"] = [{"url": str(tmp_path / d / "docs.jsonl")} for d in ("a", "b")]
        expect = (f"error: config: corpus 'samplewiki' has two sources named docs.jsonl ({tmp_path}/a/docs.jsonl, "
                  f"{tmp_path}/b/docs.jsonl)")
    elif case == "same corpus name":
        config["corpora"].append(dict(corpus))
        expect = "error: config: two corpora are named 'samplewiki' (names must be unique)"
    else:
        corpus["sources"] = [{"url": "https://example.org/"}]
        expect = "error: config: cannot take a file name from url 'https://example.org/'"
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert expect in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, proc.stderr


@pytest.mark.parametrize(("device", "gpus"), [("cuda", 2), ("auto", 0)])
def test_train_asks_a_cluster_for_one_gpu_per_rank_on_cuda(tmp_path: Path, device: str, gpus: int) -> None:
    """profiles/slurm takes train's GPU count from the rule's `gpu` resource, so it follows the preset."""
    config = tiny_config()
    config["train"].update(device=device, nproc_per_node=2, dp=2)
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", "results/train/done.json")
    block = (proc.stdout + proc.stderr).split("rule train:", 1)[1].split("\n\n", 1)[0]
    assert f"gpu={gpus}" in block, block


def test_every_rule_names_the_conda_env_for_sdm_conda() -> None:
    """`snakemake --sdm conda` builds envs/wikigpt.yaml for every rule (each rule file declares it; no conda
    here to build it, so this checks the declarations and the file they name)."""
    import re

    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text(encoding="utf-8")
        rules = re.findall(r"^\s*rule (\w+):", text, re.M)
        envs = re.findall(r"^\s*conda:\n\s*CONDA_ENV\n", text, re.M)
        assert len(envs) == len(rules), (smk.name, rules, len(envs))
    common = (REPO / "rules/common.smk").read_text(encoding="utf-8")
    env_path = re.search(r'^CONDA_ENV = "(.+)"$', common, re.M).group(1)
    env = yaml.safe_load((REPO / "rules" / env_path).read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0" in pip and any(p.startswith("-e ..") for p in pip)
