"""The results table for the workflow's HTML report: our WikiText-103 perplexity and LAMBADA accuracy next to the
published numbers in SPEC.md, and the training run's size and throughput, as one self-contained HTML file
(the report embeds it as is)."""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path

# SPEC.md "Published numbers to compare against": (model, WikiText-103 word-level ppl, LAMBADA accuracy %).
PUBLISHED: tuple[tuple[str, str, str], ...] = (
    ("GPT-2 117M, zero-shot (GPT-2 paper)", "37.50", "45.99"),
    ("GPT-2 345M, zero-shot", "26.37", "55.48"),
    ("Megatron-LM 355M", "19.31", "-"),
    ("Megatron-LM 8.3B", "10.8", "66.5"),
    ("the blog this project started from: 345M, tp=2, wiki (+ Chinese) data, not fully trained", "27", "-"),
)


def _read_json(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WikiGPTError(f"{path}: cannot read results JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WikiGPTError(f"{path}: not a JSON object")
    return data


def results_rows(ppl: dict | None, lambada: dict | None, run_name: str) -> list[tuple[str, str, str]]:
    """Our row first, then the published ones; '-' where a number was not computed."""
    ours_ppl = f"{ppl['word_ppl']:.2f}" if ppl else "-"
    ours_acc = f"{100 * lambada['strict_accuracy']:.2f}" if lambada else "-"
    return [(f"this run ({run_name})", ours_ppl, ours_acc), *PUBLISHED]


def training_summary(done_json: str | Path | None, metrics_jsonl: str | Path | None) -> dict | None:
    """Iterations, tokens, final losses (results/train/done.json) and the median training tokens/s over the
    logged steps after the first (which carries start-up cost) from results/train/metrics.jsonl."""
    done = _read_json(done_json)
    if done is None:
        return None
    rates = []
    if metrics_jsonl is not None:
        path = Path(metrics_jsonl)
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                row = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                raise WikiGPTError(f"{path}:{lineno}: not valid JSON") from None
            if isinstance(row, dict) and isinstance(row.get("tokens_per_s"), (int, float)) and row.get("step", 0) > 1:
                rates.append(float(row["tokens_per_s"]))
    return {**done, "median_tokens_per_s": statistics.median(rates) if rates else None}


def _fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) and spec else str(value)


def render_training(summary: dict) -> str:
    rows = [
        ("iterations", _fmt(summary.get("iterations"), ",")),
        ("tokens trained", _fmt(summary.get("tokens"), ",")),
        ("final train loss", _fmt(summary.get("final_train_loss"), ".4f")),
        ("final valid loss", _fmt(summary.get("final_valid_loss"), ".4f")),
        ("median training throughput (tokens/s)", _fmt(summary.get("median_tokens_per_s"), ",.0f")),
        ("training wall time (s)", _fmt(summary.get("wall_time_s"), ",.0f")),
    ]
    body = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h3>Training run</h3>\n<table><tbody>\n{body}\n</tbody></table>\n"


def render_table(ppl: dict | None, lambada: dict | None, run_name: str, training: dict | None = None) -> str:
    rows = results_rows(ppl, lambada, run_name)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    notes = []
    if ppl:
        notes.append(
            f"WikiText-103 method of the reference (SPEC): eval file <code>{html.escape(ppl['eval_file'])}</code>, "
            f"seq_len {ppl['seq_len']}, overlap {ppl['overlap']}, N_orig {ppl['n_orig']}, N_bpe {ppl['n_bpe']}, "
            f"token-level ppl {ppl['token_ppl']:.2f}. Comparable to the published column only when the eval file "
            "is the WikiText-103 test file and the tokenizer is GPT-2's BPE.")
    if lambada:
        notes.append(
            f"LAMBADA on <code>{html.escape(lambada['eval_file'])}</code> ({lambada['lines']} lines): strict "
            f"{100 * lambada['strict_accuracy']:.2f}%, last-token {100 * lambada['last_token_accuracy']:.2f}%.")
    notes_html = "".join(f"<p>{n}</p>" for n in notes)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evaluation results</title>"
        "<style>table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #999;"
        "padding:4px 8px}td:nth-child(n+2){text-align:right}</style></head><body>\n"
        "<h3>Evaluation</h3>\n<table><thead><tr><th>model</th><th>WikiText-103 ppl (word-level)</th><th>LAMBADA acc (%)</th>"
        f"</tr></thead><tbody>\n{body}\n</tbody></table>\n{notes_html}\n"
        f"{render_training(training) if training else ''}</body></html>\n"
    )


def write_results_table(out_html: str | Path, ppl_json: str | Path | None = None,
                        lambada_json: str | Path | None = None, run_name: str = "default",
                        done_json: str | Path | None = None, metrics_jsonl: str | Path | None = None) -> None:
    text = render_table(_read_json(ppl_json), _read_json(lambada_json), run_name,
                        training_summary(done_json, metrics_jsonl))
    with atomic_path(out_html) as tmp:
        tmp.write_text(text, encoding="utf-8")
