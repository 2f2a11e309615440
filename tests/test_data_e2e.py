"""The data DAG end to end on the real enwiki excerpt with OpenAI's GPT-2 BPE, through file:// URLs.

One prepared run (4 presplit shards) is shared by the tests; a 1-shard run and a second 4-shard run give
the comparisons; copies of the prepared run show what a changed config value reruns.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLE, run_snakemake, serve_files, shared_file, tiny_config, write_config

from gpt2core.data import load_encoder

pytestmark = pytest.mark.e2e
DUMP = "enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MANIFEST = "results/data/manifest.json"
EOD = "<|endoftext|>"
DTYPES = {"uint16": "<u2", "uint32": "<u4"}


def enwiki_config(shards: int = 4) -> dict:
    return {
        "corpora": [{"name": "enwiki", "sources": [{
            "url": f"file://{shared_file(DUMP)}",
            "sha256": "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"}]}],
        "presplit": {"shards": shards, "split_sentences": True, "min_chars": 200},
        "tokenizer": {
            "kind": "gpt2",
            "encoder": {"url": f"file://{shared_file('gpt2_bpe/encoder.json')}",
                        "sha256": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"},
            "vocab": {"url": f"file://{shared_file('gpt2_bpe/vocab.bpe')}",
                      "sha256": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"}},
        "data": {"split": [949, 50, 1], "seed": 1234, "dtype": "uint16"},
    }


def prepared(tmp_path_factory, name: str, shards: int) -> Path:
    workdir = tmp_path_factory.mktemp(name)
    write_config(workdir, enwiki_config(shards))
    run_snakemake(workdir, MANIFEST)
    return workdir


@pytest.fixture(scope="module")
def run4(tmp_path_factory) -> Path:
    return prepared(tmp_path_factory, "run4", 4)


@pytest.fixture(scope="module")
def run1(tmp_path_factory) -> Path:
    return prepared(tmp_path_factory, "run1", 1)


@pytest.fixture(scope="module")
def run4_again(tmp_path_factory) -> Path:
    return prepared(tmp_path_factory, "run4_again", 4)


def documents(workdir: Path) -> dict[str, dict[str, np.ndarray]]:
    """split -> {presplit id: token array (with its EOD)}, matched by decoding against presplit texts."""
    manifest = json.loads((workdir / MANIFEST).read_text())
    enc = load_encoder(workdir / manifest["tokenizer"]["path"])
    by_text: dict[str, str] = {}
    for parquet in sorted((workdir / "data/presplit/enwiki").glob("*.parquet")):
        table = pq.read_table(parquet, columns=["id", "text"]).to_pydict()
        for doc_id, text in zip(table["id"], table["text"], strict=True):
            assert text not in by_text, f"duplicate text for {doc_id}"
            by_text[text] = doc_id
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, info in manifest["splits"].items():
        out[split] = {}
        for shard in info["shards"]:
            tokens = np.fromfile(workdir / shard["bin"], dtype=DTYPES[manifest["dtype"]])
            idx = np.load(workdir / shard["idx"])
            assert idx[0] == 0 and idx[-1] == len(tokens) == shard["tokens"] and len(idx) == shard["documents"] + 1
            for a, b in zip(idx[:-1], idx[1:], strict=True):
                doc = tokens[a:b]
                assert doc[-1] == manifest["tokenizer"]["eod_id"]
                text = enc.decode(doc.tolist())
                assert text.endswith(EOD)
                doc_id = by_text[text[: -len(EOD)]]  # KeyError: a decoded document that is no presplit text
                assert doc_id not in out[split]
                out[split][doc_id] = doc
    return out


def extracted_nonempty(workdir: Path) -> int:
    n = 0
    for f in (workdir / "data/extract/enwiki").rglob("wiki_*"):
        n += sum(bool(json.loads(line)["text"].strip()) for line in f.read_text().splitlines() if line)
    return n


def test_manifest_counts_every_article(run4):
    manifest = json.loads((run4 / MANIFEST).read_text())
    assert manifest["dtype"] == "uint16"
    assert manifest["tokenizer"]["vocab_size"] == 50257 and manifest["tokenizer"]["eod_id"] == 50256
    dropped = manifest["dropped"]
    kept = sum(s["documents"] for s in manifest["splits"].values())
    assert kept > 80 and dropped.get("short", 0) > 0
    assert kept == extracted_nonempty(run4) - (sum(dropped.values()) - dropped.get("empty", 0))
    for info in manifest["splits"].values():
        assert info["tokens"] == sum(s["tokens"] for s in info["shards"])
        for shard in info["shards"]:
            assert not Path(shard["bin"]).is_absolute() and (run4 / shard["bin"]).exists()


def test_decoding_gives_back_presplit_text_and_no_document_is_in_two_splits(run4):
    docs = documents(run4)  # asserts decode(tokens) == presplit text + EOD for every document
    ids = [set(d) for d in docs.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    all_ids = set()
    for parquet in (run4 / "data/presplit/enwiki").glob("*.parquet"):
        all_ids |= set(pq.read_table(parquet, columns=["id"]).column(0).to_pylist())
    assert set().union(*ids) == all_ids


def test_shard_count_does_not_change_any_document(run4, run1):
    four, one = documents(run4), documents(run1)
    for split in four:
        assert four[split].keys() == one[split].keys()
        for doc_id, toks in four[split].items():
            assert np.array_equal(toks, one[split][doc_id]), doc_id


def test_two_runs_give_identical_bytes(run4, run4_again):
    a = sorted(p.relative_to(run4) for p in (run4 / "data/tokens").rglob("*") if p.is_file())
    b = sorted(p.relative_to(run4_again) for p in (run4_again / "data/tokens").rglob("*") if p.is_file())
    assert a == b and len(a) == 4 * 7 + 1  # + the corpus's split_plan.json
    for rel in a + [Path(MANIFEST)] + sorted((run4 / "data/presplit").rglob("*.parquet")):
        rel = rel.relative_to(run4) if rel.is_absolute() else rel
        assert (run4 / rel).read_bytes() == (run4_again / rel).read_bytes(), rel


def test_second_dry_run_has_nothing_to_do(run4):
    proc = run_snakemake(run4, "-n", MANIFEST)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def rules_run(proc) -> dict[str, int]:
    """The 'Job stats' table snakemake prints: rule -> job count."""
    text = proc.stdout + proc.stderr
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def rerun_with(src: Path, dst: Path, section: str, key: str, value) -> tuple[dict[str, int], Path]:
    shutil.copytree(src, dst, symlinks=True)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config[section][key] = value
    write_config(dst, config)
    return rules_run(run_snakemake(dst, MANIFEST)), dst


def test_min_chars_reruns_presplit_onward_only(run4, tmp_path):
    before = (run4 / "data/downloads/enwiki").stat().st_mtime_ns
    jobs, dst = rerun_with(run4, tmp_path / "w", "presplit", "min_chars", 2000)
    assert jobs == {"presplit": 4, "split_plan": 1, "tokenize": 4, "gather": 1}
    assert (dst / "data/downloads/enwiki").stat().st_mtime_ns == before
    dropped = json.loads((dst / MANIFEST).read_text())["dropped"]
    assert dropped["short"] > json.loads((run4 / MANIFEST).read_text())["dropped"]["short"]


def test_split_change_reruns_tokenize_onward_only(run4, tmp_path):
    jobs, dst = rerun_with(run4, tmp_path / "w", "data", "split", [80, 10, 10])
    assert jobs == {"split_plan": 1, "tokenize": 4, "gather": 1}
    manifest = json.loads((dst / MANIFEST).read_text())
    assert manifest["splits"]["test"]["documents"] > 0


def test_a_remote_dump_glob_builds_the_dag_offline_after_the_first_run(tmp_path):
    """A dump URL with a glob is expanded from its remote checksum list at DAG build; the list is kept
    beside the parts, so once they are downloaded the workflow builds (and plans) with the server gone."""
    dump = (SAMPLE / "samplewiki-pages-articles.xml.bz2").read_bytes()
    name = "samplewiki-pages-articles1.xml-p1p99.bz2"
    files = {f"/dumps/{name}": dump, "/dumps/sha1sums.txt": f"{hashlib.sha1(dump).hexdigest()}  {name}\n".encode()}
    config = tiny_config()
    with serve_files(files) as (_, base):
        config["corpora"][0]["sources"] = [{"url": f"{base}/dumps/samplewiki-pages-articles[0-9]*.xml-p*.bz2",
                                            "checksums_url": f"{base}/dumps/sha1sums.txt"}]
        write_config(tmp_path, config)
        run_snakemake(tmp_path, f"data/downloads/samplewiki/{name}")
    assert (tmp_path / "data/downloads/samplewiki" / name).read_bytes() == dump
    proc = run_snakemake(tmp_path, "-n", MANIFEST, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    plan = proc.stdout + proc.stderr
    assert "rule extract" in plan and f"output: data/downloads/samplewiki/{name}" not in plan, plan[-2000:]


def test_editing_a_copied_local_source_reruns_its_download_onward(tmp_path):
    """A local source is copied into data/downloads: the copy is the download rule's output and the source
    its input, so an edited source (e.g. the sample rebuilt after an edit) is copied again and flows on.
    (Snakemake 9 compares contents: a newer time alone reruns nothing, an edit does.)"""
    src = tmp_path / "src" / "wiki.test.tokens"
    src.parent.mkdir()
    shutil.copy(SAMPLE / "wiki.test.tokens", src)
    config = tiny_config()
    config["eval"]["wiki103"]["source"] = {"url": str(src)}
    work = tmp_path / "w"
    work.mkdir()
    write_config(work, config)
    target = "data/eval/wiki103_titles.txt"
    run_snakemake(work, target)
    with src.open("a", encoding="utf-8") as f:
        f.write(" = An Edited Title = \n\n A line . \n")
    assert rules_run(run_snakemake(work, target)) == {"download": 1, "eval_titles": 1}
    assert "An Edited Title" in (work / target).read_text(encoding="utf-8")
