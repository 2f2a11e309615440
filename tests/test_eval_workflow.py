"""The evaluation rules through the real Snakemake workflow: outputs, no-op reruns, a changed eval param
reruns only evaluation, the HTML report, a bad model fails cleanly. The model in results/model/ is placed by
the test (a tiny exported GPT), and only the download and evaluation rules may run, so the test does not
train; the whole pipeline runs in the project's end-to-end run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SAMPLE, run_snakemake, tiny_config, write_config
from test_eval_support import export_tiny, small_bpe_json, tiny_gpt

from gpt2core.eval.runtime import read_text

pytestmark = pytest.mark.e2e
EVAL_RULES = ("--allowed-rules", "download", "eval_titles", "ppl_wiki103", "lambada", "eval_table")
TABLE = "results/eval_table.html"


def ran(proc) -> set[str]:
    """Rules that ran, from Snakemake's log."""
    return set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M))


def set_eval(workdir: Path, **changes: dict) -> None:
    config = tiny_config()
    for key, values in changes.items():
        config["eval"][key].update(values)
    write_config(workdir, config)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("evalwf")
    tok = small_bpe_json(read_text(SAMPLE / "wiki.test.tokens"), wd / "tok.json")
    vocab = len(json.loads(tok.read_text())["model"]["vocab"])
    export_tiny(tiny_gpt(vocab, n_positions=64), wd / "results" / "model", tok)
    # the trainer's summary and metrics, which the results table reads (format of gpt2core.train)
    (wd / "results/train").mkdir(parents=True)
    (wd / "results/train/done.json").write_text(json.dumps(
        {"iterations": 3, "tokens": 6144, "final_train_loss": 5.25, "final_valid_loss": None,
         "skipped_steps": 0, "wall_time_s": 1.5}))
    (wd / "results/train/metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "tokens": 2048 * s, "loss": 6.0 - s / 4, "tokens_per_s": r}) + "\n"
        for s, r in ((1, 10.0), (2, 4000.0), (3, 5000.0))))
    set_eval(wd)
    proc = run_snakemake(wd, TABLE, *EVAL_RULES)
    assert {"ppl_wiki103", "lambada", "eval_table"} <= ran(proc)
    return wd


def test_outputs(workdir: Path) -> None:
    first = (workdir / "results/ppl_wiki103.txt").read_text().splitlines()[0]
    ppl = json.loads((workdir / "results/ppl_wiki103.json").read_text())
    assert float(first) == pytest.approx(ppl["word_ppl"], rel=1e-6)
    assert ppl["eval_file"] == "data/downloads/eval/wiki103/wiki.test.tokens"
    assert ppl["seq_len"] == 64 and ppl["overlap"] == 32 and ppl["batch_size"] == 8
    lam = json.loads((workdir / "results/lambada.json").read_text())
    assert lam["lines"] == 102 and lam["eval_file"] == "data/downloads/eval/lambada/lambada_sample.jsonl"
    table = (workdir / TABLE).read_text()
    assert f"{ppl['word_ppl']:.2f}" in table and "37.50" in table and "45.99" in table
    assert "<td>4,500</td>" in table  # median training tokens/s over steps after the first
    assert "windows" in (workdir / "logs/ppl_wiki103/ppl_wiki103.log").read_text()  # the progress bar
    assert (workdir / "logs/benchmarks/ppl_wiki103/ppl_wiki103.tsv").exists()


def test_rerun_does_nothing(workdir: Path) -> None:
    proc = run_snakemake(workdir, TABLE, *EVAL_RULES, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_param_reruns_only_that_evaluation(workdir: Path) -> None:
    lambada_before = (workdir / "results/lambada.json").stat().st_mtime_ns
    set_eval(workdir, wiki103={"overlap": 16})
    proc = run_snakemake(workdir, TABLE, *EVAL_RULES)
    assert ran(proc) == {"ppl_wiki103", "eval_table"}
    assert json.loads((workdir / "results/ppl_wiki103.json").read_text())["overlap"] == 16
    assert (workdir / "results/lambada.json").stat().st_mtime_ns == lambada_before
    set_eval(workdir, wiki103={"overlap": 16}, lambada={"batch_size": 5})
    assert ran(run_snakemake(workdir, TABLE, *EVAL_RULES)) == {"lambada", "eval_table"}


def test_report(workdir: Path) -> None:
    run_snakemake(workdir, "--report", "report.html", TABLE)
    html = (workdir / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "Evaluation" in html and "eval_table.html" in html


def test_bad_model_fails_cleanly(workdir: Path) -> None:
    good_lambada = (workdir / "results/lambada.json").read_bytes()
    weights = workdir / "results/model/model.safetensors"
    saved = weights.read_bytes()
    try:
        weights.write_bytes(saved[: len(saved) // 2])
        proc = run_snakemake(workdir, "results/ppl_wiki103.txt", *EVAL_RULES, "--forcerun", "ppl_wiki103",
                             check=False)
        assert proc.returncode != 0
        log = (workdir / "logs/ppl_wiki103/ppl_wiki103.log").read_text()
        assert re.search(r"^error: .*model\.safetensors", log, re.M), log
        assert not (workdir / "results/ppl_wiki103.txt").exists()
        assert not list((workdir / "results").glob(".ppl_wiki103*"))
        assert (workdir / "results/lambada.json").read_bytes() == good_lambada
    finally:
        weights.write_bytes(saved)
