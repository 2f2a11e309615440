"""The report's results table: our numbers next to SPEC's published ones, training throughput, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2core.errors import WikiGPTError
from gpt2core.eval.report import PUBLISHED, render_table, results_rows, write_results_table

PPL = {"word_ppl": 41.234, "token_ppl": 30.5, "eval_file": "data/downloads/eval/wiki103/wiki.test.tokens",
       "seq_len": 1024, "overlap": 32, "n_orig": 245566, "n_bpe": 270330}
LAMBADA = {"strict_accuracy": 0.4321, "last_token_accuracy": 0.5, "eval_file": "l.jsonl", "lines": 5153}


def test_rows_put_ours_first_then_spec() -> None:
    rows = results_rows(PPL, LAMBADA, "gpt2-small-enwiki")
    assert rows[0] == ("this run (gpt2-small-enwiki)", "41.23", "43.21")
    assert rows[1:] == list(PUBLISHED)
    assert ("GPT-2 117M, zero-shot (GPT-2 paper)", "37.50", "45.99") in rows
    assert results_rows(None, None, "x")[0] == ("this run (x)", "-", "-")


def test_html_escapes_and_lists_settings() -> None:
    html = render_table({**PPL, "eval_file": "<odd>.tokens"}, None, "r&d")
    assert "&lt;odd&gt;.tokens" in html and "r&amp;d" in html and "seq_len 1024" in html


def test_write_with_training_summary(tmp_path: Path) -> None:
    (tmp_path / "ppl.json").write_text(json.dumps(PPL))
    (tmp_path / "done.json").write_text(json.dumps({"iterations": 10, "tokens": 20480, "final_train_loss": 3.0}))
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "tokens_per_s": r}) + "\n" for s, r in ((1, 1.0), (2, 300.0), (3, 100.0))))
    write_results_table(tmp_path / "t.html", tmp_path / "ppl.json", None, "r", tmp_path / "done.json",
                        tmp_path / "metrics.jsonl")
    html = (tmp_path / "t.html").read_text()
    assert "<td>41.23</td>" in html and "<td>20,480</td>" in html and "<td>200</td>" in html


def test_bad_results_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "ppl.json").write_text("{not json")
    with pytest.raises(WikiGPTError, match="ppl.json: cannot read results JSON"):
        write_results_table(tmp_path / "t.html", tmp_path / "ppl.json")
    assert not (tmp_path / "t.html").exists()
