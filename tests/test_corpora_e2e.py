"""Several corpora through the real workflow: English samplewiki + the project's zhwiki-format dump (t2s)
+ its MNBVC-format sample, one bilingual BPE, per-corpus manifest sections, a blend by weight; adding a
JSONL corpus reruns only its own stages plus the tokenizer onward; bad JSONL/MNBVC input fails in one line
naming file and line; on the real enwiki excerpt the bilingual BPE is measured against GPT-2's."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLE, run_snakemake, shared_file, tiny_config, write_config

from gpt2core.data import load_encoder
from gpt2core.data.blend import train_blend
from gpt2core.data.loader import load_manifest
from gpt2core.data.tokenizer import build_gpt2, chars_per_token, is_heldout

pytestmark = pytest.mark.e2e
MANIFEST = "results/data/manifest.json"
ZH = SAMPLE / "zh"
EOD = "<|endoftext|>"
TRADITIONAL = ["茶樹", "飲料", "貓", "圖書館", "歷史", "蠟燭", "郵局", "公園"]
SIMPLIFIED = ["茶树", "饮料", "猫", "图书馆", "历史", "蜡烛", "邮局", "公园"]


def zh_corpora() -> list[dict]:
    return [
        {"name": "zhwiki", "kind": "wikipedia", "lang": "zh", "weight": 1.0, "t2s": True,
         "sources": [{"url": str(ZH / "zhwiki-pages-articles.xml.bz2")}]},
        {"name": "mnbvc", "kind": "mnbvc", "lang": "zh", "weight": 1.0,
         "sources": [{"url": str(ZH / "mnbvc-sample.jsonl")}]},
    ]


def bilingual_config() -> dict:
    config = tiny_config(presplit={"shards": 2, "min_chars": 100},
                         tokenizer={"kind": "bpe", "vocab_size": 4096, "min_frequency": 2})
    config["corpora"][0]["weight"] = 2.0
    config["corpora"] += zh_corpora()
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("bilingual")
    write_config(workdir, bilingual_config())
    run_snakemake(workdir, MANIFEST)
    return workdir


def presplit_texts(workdir: Path, corpus: str) -> dict[str, str]:
    out = {}
    for parquet in sorted((workdir / "data/presplit" / corpus).glob("*.parquet")):
        table = pq.read_table(parquet, columns=["id", "text"]).to_pydict()
        out.update(zip(table["id"], table["text"], strict=True))
    return out


def decoded_documents(workdir: Path, section: dict, enc) -> list[str]:
    docs = []
    for split in section["splits"].values():
        for shard in split["shards"]:
            tokens = np.fromfile(workdir / shard["bin"], dtype="<u2")
            idx = np.load(workdir / shard["idx"])
            docs += [enc.decode(tokens[a:b].tolist()) for a, b in zip(idx[:-1], idx[1:], strict=True)]
    return docs


def test_manifest_has_a_section_per_corpus_summing_to_the_whole(run):
    manifest = json.loads((run / MANIFEST).read_text())
    sections = {c["name"]: c for c in manifest["corpora"]}
    assert list(sections) == ["samplewiki", "zhwiki", "mnbvc"]
    assert [(c["kind"], c["lang"], c["weight"]) for c in sections.values()] == [
        ("wikipedia", "en", 2.0), ("wikipedia", "zh", 1.0), ("mnbvc", "zh", 1.0)]
    for split, whole in manifest["splits"].items():
        assert whole["tokens"] == sum(c["splits"][split]["tokens"] for c in sections.values())
        assert whole["documents"] == sum(c["splits"][split]["documents"] for c in sections.values())
    for name, c in sections.items():
        assert all(s["bin"].startswith(f"data/tokens/{name}/") for v in c["splits"].values() for s in v["shards"])
    assert set(manifest["tokenizer"]["heldout"]) == {"en", "zh"}


def test_decoding_every_chinese_document_gives_back_its_presplit_text(run):
    manifest = json.loads((run / MANIFEST).read_text())
    enc = load_encoder(run / manifest["tokenizer"]["path"])
    for section in manifest["corpora"]:
        if section["lang"] != "zh":
            continue
        texts = presplit_texts(run, section["name"])
        decoded = decoded_documents(run, section, enc)
        assert all(d.endswith(EOD) for d in decoded)
        assert sorted(d[: -len(EOD)] for d in decoded) == sorted(texts.values())
        assert len(decoded) == sum(v["documents"] for v in section["splits"].values()) == len(texts)


def test_t2s_only_where_configured_and_mnbvc_duplicates_dropped(run):
    zhwiki = "\n".join(presplit_texts(run, "zhwiki").values())
    assert not [t for t in TRADITIONAL if t in zhwiki]
    assert all(s in zhwiki for s in SIMPLIFIED)
    mnbvc = presplit_texts(run, "mnbvc")
    joined = "\n".join(mnbvc.values())
    assert "抽油煙機" in joined and "抽油烟机" not in joined  # no t2s for this corpus: Traditional kept
    assert joined.count("现在中国的高速铁路四通八达") == 1  # a paragraph flagged 是否重复 is left out
    assert "整份文件都被标记为重复文件" not in joined  # a record flagged 是否重复文件 is left out
    source = (ZH / "mnbvc-src/02-zhongqiu.txt").read_text(encoding="utf-8").splitlines()
    assert mnbvc["mnbvc-sample.jsonl:2"].split("\n") == source  # paragraphs in 行号 order, one sentence each
    bread = presplit_texts(run, "zhwiki")["10"].split("\n")
    assert bread[:2] == ["面包是一种用面粉加水和成面团，再经过发酵和烘烤制成的食品。",  # split after 。, no spaces
                         "它是人类最古老的加工食品之一，在世界上几乎每个国家都能见到，有的地方把它当作每天的主食，"
                         "有的地方只在早餐时吃。"]


def test_blend_of_the_real_manifest_follows_weights(run, monkeypatch):
    monkeypatch.chdir(run)  # manifest paths are relative to the working directory
    manifest = load_manifest(run / MANIFEST)
    blend, used = train_blend(manifest, 32, 1234, run / MANIFEST)
    want = np.array([c.weight for c in used]) / sum(c.weight for c in used)
    starts = [{ds.window(i)[:8].tobytes() for i in range(ds.n_windows)} for ds in blend.datasets]
    counts = np.zeros(len(used))
    for g in range(10_000):
        head = blend.sample(g)[:8].tobytes()
        counts[[k for k, s in enumerate(starts) if head in s][0]] += 1
    assert np.all(np.abs(counts / counts.sum() - want) <= 0.02), counts


def test_second_run_has_nothing_to_do(run):
    proc = run_snakemake(run, "-n", MANIFEST)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def jobs_run(proc) -> dict[str, int]:
    text = proc.stdout + proc.stderr
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_adding_a_jsonl_corpus_reruns_only_its_stages_and_the_tokenizer_onward(run, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(run, dst, symlinks=True)
    src = tmp_path / "notes.jsonl.gz"
    docs = [{"id": i, "title": f"Note {i}", "body": f"Note {i} is about walking to the market in the rain. "
             f"It was written for this test and says little else. " * 4} for i in range(12)]
    src.write_bytes(gzip.compress("".join(json.dumps(d) + "\n" for d in docs).encode()))
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config["corpora"].append({"name": "notes", "kind": "jsonl", "lang": "en", "weight": 0.5,
                              "text_field": "body", "sources": [{"url": str(src)}]})
    write_config(dst, config)
    old = {p: p.stat().st_mtime_ns for c in ("samplewiki", "zhwiki", "mnbvc")
           for p in (dst / "data/presplit" / c).glob("*.parquet")}
    jobs = jobs_run(run_snakemake(dst, MANIFEST))
    assert jobs == {"download": 1, "extract": 1, "presplit": 2, "split_plan": 1, "tokenizer": 1, "tokenize": 8,
                    "gather": 1}
    assert {p: p.stat().st_mtime_ns for p in old} == old
    manifest = json.loads((dst / MANIFEST).read_text())
    notes = [c for c in manifest["corpora"] if c["name"] == "notes"][0]
    assert notes["weight"] == 0.5 and sum(v["documents"] for v in notes["splits"].values()) == 12
    assert sorted(presplit_texts(dst, "notes")) == sorted(f"notes.jsonl.gz:{i}" for i in range(12))


def test_per_corpus_min_chars_reruns_only_that_corpus_presplit(run, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(run, dst, symlinks=True)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    zh = next(c for c in config["corpora"] if c["name"] == "zhwiki")
    zh["min_chars"] = 10**6  # drops every zhwiki article
    write_config(dst, config)
    planned = jobs_run(run_snakemake(dst, "-n", MANIFEST))
    assert planned.get("presplit") == 2 and "extract" not in planned and "download" not in planned
    run_snakemake(dst, MANIFEST)  # an emptied corpus goes through tokenizer, tokenize and gather
    assert presplit_texts(dst, "zhwiki") == {}
    assert presplit_texts(dst, "mnbvc") == presplit_texts(run, "mnbvc")


def error_lines(proc) -> list[str]:
    return sorted({ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")})


@pytest.mark.parametrize("kind, records, message", [
    ("jsonl", [{"text": "fine text " * 30}, {"title": "no text"}], r"bad\.jsonl:2: no text field 'text'"),
    ("mnbvc", [{"段落": [{"行号": 1, "是否重复": False, "内容": "好的。" * 50}]}, {"文件名": "x.txt"}],
     r"bad\.jsonl:2: MNBVC record without 段落"),
])
def test_bad_record_fails_in_one_line_naming_file_and_line(tmp_path, kind, records, message):
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    work = tmp_path / "w"
    work.mkdir()
    write_config(work, {"corpora": [{"name": "bad", "kind": kind, "lang": "zh", "sources": [{"url": str(src)}]}],
                        "presplit": {"shards": 1, "min_chars": 10}})
    proc = run_snakemake(work, MANIFEST, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and re.search(message, lines[0]), proc.stderr[-3000:]
    assert not (work / "data/extract/bad").exists() or not any((work / "data/extract/bad").iterdir())
    assert not [p for p in work.rglob("*") if ".tmp-" in p.name]


def test_bilingual_bpe_against_gpt2_on_held_out_text(tmp_path):
    """enwiki excerpt + zhwiki + MNBVC samples, 32,768 tokens: Chinese >= 1.2 characters per token on
    held-out documents; English within 15% of GPT-2's characters per token on the same documents."""
    dump = shared_file("enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    config = {"corpora": [{"name": "enwiki", "lang": "en", "sources": [{"url": f"file://{dump}"}]}, *zh_corpora()],
              "presplit": {"shards": 2, "min_chars": 100},
              "tokenizer": {"kind": "bpe", "vocab_size": 32768, "min_frequency": 2}}
    write_config(tmp_path, config)
    run_snakemake(tmp_path, MANIFEST)
    heldout = json.loads((tmp_path / MANIFEST).read_text())["tokenizer"]["heldout"]
    texts: dict[str, list[str]] = {"en": [], "zh": []}
    for corpus, lang in (("enwiki", "en"), ("zhwiki", "zh"), ("mnbvc", "zh")):
        texts[lang] += [t for i, t in presplit_texts(tmp_path, corpus).items() if is_heldout(i)]
    from tokenizers import Tokenizer

    build_gpt2(shared_file("gpt2_bpe/encoder.json"), shared_file("gpt2_bpe/vocab.bpe"), tmp_path / "gpt2.json")
    gpt2 = Tokenizer.from_file(str(tmp_path / "gpt2.json"))
    ours = Tokenizer.from_file(str(tmp_path / "results/tokenizer/tokenizer.json"))
    for lang in ("en", "zh"):
        assert heldout[lang]["chars_per_token"] == chars_per_token(ours, texts[lang])["chars_per_token"]
    gpt2_cpt = {lang: chars_per_token(gpt2, t)["chars_per_token"] for lang, t in texts.items()}
    print(f"held-out characters per token: ours {heldout}, GPT-2 {gpt2_cpt}")
    assert heldout["zh"]["chars_per_token"] >= 1.2 and gpt2_cpt["zh"] < 0.6
    assert heldout["en"]["chars_per_token"] >= 0.85 * gpt2_cpt["en"]


def test_linked_local_folder_is_read_in_place_and_editing_a_file_reruns_only_its_part(tmp_path):
    """`link: true` on a local folder: every part under data/downloads is a link to the user's file (no
    copy), the user's files keep their bytes and times through the run, a second run has nothing to do, and
    rewriting one file reruns extract for that part only (and presplit), never the download."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("a", "b"):
        docs = [{"id": i, "text": f"Document {name}{i} says that the river was high in spring. " * 4}
                for i in range(5)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    work = tmp_path / "w"
    work.mkdir()
    write_config(work, {"corpora": [{"name": "notes", "kind": "jsonl", "lang": "en",
                                     "sources": [{"url": str(folder), "link": True}]}],
                        "presplit": {"shards": 1, "min_chars": 10}})
    target = "data/presplit/notes/00000.parquet"
    run_snakemake(work, target)
    for name in ("a.jsonl", "b.jsonl"):
        part = work / "data/downloads/notes" / name
        assert part.is_symlink() and part.readlink() == (folder / name).resolve()
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert len(presplit_texts(work, "notes")) == 10
    again = run_snakemake(work, "-n", target)
    assert "Nothing to be done" in again.stdout + again.stderr
    with (folder / "b.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": 9, "text": "A late addition about the river and the spring floods. " * 4}) + "\n")
    assert jobs_run(run_snakemake(work, target)) == {"extract": 1, "presplit": 1}
    assert len(presplit_texts(work, "notes")) == 11
