"""The few lines a finished workflow run prints on the console (the Snakefile's `onsuccess`): the numbers people quote
and where the files are, so nobody has to know the results layout to find them.

Printed only when this run wrote an evaluation (WikiText-103 perplexity or LAMBADA): a rerun that only made
samples has no new numbers to report.
"""

from __future__ import annotations

import json
from pathlib import Path


def _written_since(path: Path, since: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= since


def _first_number(path: Path) -> float | None:
    try:
        return float(path.read_text(encoding="utf-8").split(maxsplit=1)[0])
    except (OSError, ValueError, IndexError):
        return None


def _lambada(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {k: float(data[k]) for k in ("strict_accuracy", "last_token_accuracy")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_summary(results: str | Path, since: float) -> str | None:
    """The summary of a run that started at `since` (epoch seconds), or None when it evaluated nothing."""
    results = Path(results)
    ppl_txt, lambada_json = results / "ppl_wiki103.txt", results / "lambada.json"
    if not (_written_since(ppl_txt, since) or _written_since(lambada_json, since)):
        return None
    lines = ["wikigpt: done."]
    ppl = _first_number(ppl_txt)
    if ppl is not None:
        lines.append(f"  WikiText-103 word-level perplexity: {ppl:,.2f}  ({ppl_txt})")
    lam = _lambada(lambada_json)
    if lam is not None:
        lines.append(f"  LAMBADA accuracy: {100 * lam['strict_accuracy']:.2f}% strict, "
                     f"{100 * lam['last_token_accuracy']:.2f}% last token  ({lambada_json})")
    for label, path in (("model", results / "model"), ("samples", results / "samples.jsonl"),
                        ("loss curve", results / "loss_curve.png"), ("results table", results / "eval_table.html")):
        if path.exists():
            lines.append(f"  {label + ':':15}{path}")
    lines.append(f"  {'report:':15}snakemake --report report.html  (everything above on one page)")
    return "\n".join(lines)
