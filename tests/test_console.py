"""What a user sees on the console: a few training progress lines (the bar stays in the log), no command
lines, and a summary with the numbers and paths when a run evaluated the model."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, REPO, run_snakemake, tiny_config, write_config
from run_summary import run_summary

from gpt2core.training.progress import ConsoleProgress, eta_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_at_each_tenth_or_every_30_s_and_at_the_end() -> None:
    clock, out = Clock(), io.StringIO()
    progress = ConsoleProgress(total=100, start=0, stream=out, clock=clock)
    for step in range(1, 101):
        clock.now += 0.1 if step <= 50 else 5.0  # from step 51, 5 s a step: 30 s pass before the next tenth
        progress.update(step, {"loss": 5.0 - step / 100, "tokens_per_s": 12345.6})
    lines = out.getvalue().splitlines()
    steps = [int(re.match(r"train: step (\d+)/100 ", ln).group(1)) for ln in lines]
    assert steps == [1, 10, 20, 30, 40, 50, 56, 60, 66, 70, 76, 80, 86, 90, 96, 100]
    assert lines[0] == "train: step 1/100 (1%), loss 4.990, 12,346 tokens/s, ETA 0:10"
    assert lines[-1].startswith("train: step 100/100 (100%), loss 4.000, 12,346 tokens/s, ETA 0:00")


def test_progress_of_a_resumed_run_counts_its_rate_from_where_it_resumed() -> None:
    clock, out = Clock(), io.StringIO()
    progress = ConsoleProgress(total=1000, start=900, stream=out, clock=clock)
    clock.now += 10.0
    progress.update(901, {"loss": 3.0, "tokens_per_s": 10, "valid_loss": 3.25})
    assert out.getvalue() == "train: step 901/1,000 (90%), loss 3.000, 10 tokens/s, ETA 16:30, valid loss 3.250\n"
    assert eta_text(3725) == "1:02:05"


def _results(root: Path, mtime: float) -> Path:
    results = root / "results"
    (results / "model").mkdir(parents=True)
    (results / "ppl_wiki103.txt").write_text("8563.604242\n# word-level perplexity ...\n")
    (results / "lambada.json").write_text(json.dumps({"strict_accuracy": 0.125, "last_token_accuracy": 0.5}))
    (results / "samples.jsonl").write_text("{}\n")
    for path in results.rglob("*"):
        os.utime(path, (mtime, mtime))
    return results


def test_summary_names_the_numbers_and_paths_of_what_this_run_evaluated(tmp_path: Path) -> None:
    results = _results(tmp_path, 2000.0)
    text = run_summary(results, since=1000.0)
    assert f"WikiText-103 word-level perplexity: 8,563.60  ({results}/ppl_wiki103.txt)" in text
    assert "LAMBADA accuracy: 12.50% strict, 50.00% last token" in text
    assert f"model:         {results}/model" in text and f"samples:       {results}/samples.jsonl" in text
    assert "loss curve" not in text  # not there, not named
    assert "snakemake --report report.html" in text
    assert run_summary(results, since=3000.0) is None  # evaluated by an earlier run: nothing new to say


@pytest.mark.e2e
def test_workflow_console_shows_training_progress_and_the_summary_not_command_lines(tmp_path: Path) -> None:
    config = tiny_config(train={"iters": 20, "eval_interval": 10, "save_interval": 10, "log_interval": 5})
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path)
    console = proc.stdout + proc.stderr
    assert "train: 1 x 1 process(es)" in console and "in logs/train/train.log" in console
    progress = re.findall(r"^train: step (\d+)/20 \(\d+%\), loss [\d.]+, [\d,]+ tokens/s, ETA [\d:]+", console,
                          re.M)
    assert progress[0] == "1" and progress[-1] == "20", console[-3000:]
    assert "Shell command" not in console and "gpt2core.train" not in console
    assert re.search(r"^wikigpt: done\.\n  WikiText-103 word-level perplexity: [\d,.]+  \(results/ppl_wiki103.txt\)"
                     r"\n  LAMBADA accuracy: ", console, re.M), console[-3000:]
    log = (tmp_path / "logs/train/train.log").read_text()
    assert log.startswith("+ OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE ") and "-m' 'gpt2core.train'" in log
    assert "20/20" in log  # the bar, as before


def _snakemake_as_typed(workdir: Path, *args: str) -> str:
    """`snakemake ARGS` as a user types it: no --cores added (run_snakemake adds one)."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.e2e
def test_no_cores_needed_and_cores_or_jobs_still_override(tmp_path: Path) -> None:
    """Was: `Error: cores have to be specified for local execution`. The profile gives every core; --cores N
    caps the cores, -j N the jobs running at once."""
    write_config(tmp_path, tiny_config())
    downloads = ["data/downloads/eval/lambada/lambada_sample.jsonl", "data/downloads/eval/wiki103/wiki.test.tokens"]
    out = _snakemake_as_typed(tmp_path, *downloads)
    assert f"Provided cores: {os.cpu_count()}" in out
    if os.cpu_count() > 1:
        assert "Execute 2 jobs" in out, out  # both downloads at once
    assert "Provided cores: 1" in _snakemake_as_typed(tmp_path, "--cores", "1", "--forceall", *downloads)
    out = _snakemake_as_typed(tmp_path, "-j", "1", "--forceall", *downloads)
    assert "Execute 2 jobs" not in out and out.count("Execute 1 jobs") == 2, out


def test_a_console_that_went_away_does_not_stop_training() -> None:
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    progress = ConsoleProgress(total=10, start=0, stream=ClosedPipe(), clock=Clock())
    for step in range(1, 11):
        progress.update(step, {"loss": 1.0, "tokens_per_s": 1.0})  # raises nothing
    assert progress.stream is None
