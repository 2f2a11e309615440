"""Bad inputs the other test files do not already try (see the table in docs/reliability.md for those: test_data_errors.py,
test_train.py, test_parallel*.py, test_eval_workflow.py): a page whose text is 50 MB, a page of only
whitespace, titles with `../` and shell metacharacters, and empty evaluation files. Each is either handled
correctly or stops with one clear line naming the file; none destroys an earlier good output.
(A config path with spaces and `;`: tests/test_trust.py::test_workflow_in_a_hostile_directory_with_hostile_titles.)"""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.e2e
BIG = 50 * 1000 * 1000
HOSTILE_TITLE = "../../x/$(touch PWNED); `rm -rf ~` | ../.."


def page(title: str, pid: int, text: str) -> str:
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{pid}</id>\n    <revision>\n"
            f"      <id>{pid + 1}</id>\n      <text xml:space=\"preserve\">{text}</text>\n    </revision>\n"
            "  </page>\n")


def error_lines(proc) -> list[str]:
    return sorted({ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")})


@pytest.fixture(scope="module")
def odd_dump_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample dump plus a 50 MB article, a whitespace-only article and one with a hostile title,
    through the data stages (to the manifest)."""
    work = tmp_path_factory.mktemp("odd_dump")
    xml = bz2.decompress((SAMPLE / "samplewiki-pages-articles.xml.bz2").read_bytes()).decode()
    para = "The giant article goes on with plain sentences about bread, tea and rain. " * 40 + "\n\n"
    giant = para * (BIG // len(para) + 1)
    ordinary = " ".join(["A title is only text, whatever characters it holds."] * 10)
    extra = (page("Giant", 990001, giant) + page("Blank", 990011, " \n\t\n   \n" * 50)
             + page(HOSTILE_TITLE, 990021, f"{ordinary}\n\n{ordinary}"))
    dump = work / "odd-pages-articles.xml.bz2"
    dump.write_bytes(bz2.compress(xml.replace("</mediawiki>", extra + "</mediawiki>").encode()))
    config = tiny_config(presplit={"shards": 1}, tokenizer={"kind": "bpe", "vocab_size": 512, "min_frequency": 2,
                                                           "sample_bytes": 2_000_000})
    config["corpora"][0]["sources"] = [{"url": str(dump)}]
    write_config(work, config)
    run_snakemake(work, "results/data/manifest.json", timeout=1200)
    return work


def documents(work: Path) -> dict[str, str]:
    rows = pq.read_table(work / "data/presplit/samplewiki/00000.parquet", columns=["title", "text"]).to_pylist()
    return {r["title"]: r["text"] for r in rows}


def test_a_50_mb_page_is_kept_whole(odd_dump_run: Path) -> None:
    docs = documents(odd_dump_run)
    assert len(docs["Giant"]) > 0.95 * BIG  # sentences re-joined one a line, nothing cut
    manifest = json.loads((odd_dump_run / "results/data/manifest.json").read_text())
    assert manifest["splits"]["train"]["tokens"] + manifest["splits"]["valid"]["tokens"] + \
        manifest["splits"]["test"]["tokens"] > 5_000_000  # the giant page's tokens are in the shards


def test_a_whitespace_only_page_is_dropped_not_an_error(odd_dump_run: Path) -> None:
    assert "Blank" not in documents(odd_dump_run)
    assert not any(not t.strip() for t in documents(odd_dump_run).values())


def test_a_hostile_title_stays_text(odd_dump_run: Path) -> None:
    assert HOSTILE_TITLE in documents(odd_dump_run)
    assert not list(odd_dump_run.parent.rglob("PWNED")) and not (odd_dump_run.parent / "x").exists()
    tops = {p.name for p in odd_dump_run.iterdir()}
    assert tops <= {"config.yaml", "odd-pages-articles.xml.bz2", "data", "results", "logs", ".snakemake"}, tops


def test_empty_eval_files_are_one_line_errors_and_keep_good_outputs(tmp_path: Path) -> None:
    """A good run first; then the WikiText and LAMBADA files are swapped for empty ones: each evaluation
    stops with one line naming its file, the model and the other outputs stay as they were."""
    config = tiny_config(model={"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "n_positions": 32},
                         train={"iters": 4, "save_interval": 2, "eval_interval": 2, "eval_iters": 1, "micro_batch": 4},
                         tokenizer={"kind": "bpe", "vocab_size": 512, "min_frequency": 2},
                         generate={"prompts": ["A"], "max_new_tokens": 4})
    config["eval"]["wiki103"]["decontaminate"] = False
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "all")
    keep = {p: p.read_bytes() for p in [*(tmp_path / "results/model").iterdir(), tmp_path / "results/samples.jsonl",
                                        tmp_path / "results/train/done.json"]}
    for key, name in (("wiki103", "empty.tokens"), ("lambada", "empty.jsonl")):
        (tmp_path / name).write_bytes(b"")
        config["eval"][key]["source"] = {"url": str(tmp_path / name)}
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "all", "--keep-going", check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert any("empty.tokens" in ln for ln in lines) and any("empty.jsonl" in ln for ln in lines), lines
    assert len(lines) == 2, lines
    for path, data in keep.items():
        assert path.read_bytes() == data, path
    assert not (tmp_path / "results/ppl_wiki103.txt").exists() and not (tmp_path / "results/lambada.json").exists()
    assert not [p for p in (tmp_path / "results").rglob("*") if ".tmp-" in p.name]
