"""Clean text into the tokenizer, on real dumps: entities, language variants, inline templates, leftover
markup counted, a dump without <siteinfo>, and a valid and a test document for every corpus.

Real text: the shared enwiki excerpt (206 pages) and the project's own samples (samplewiki page 72 and
zhwiki pages 50-51 hold one case each, written for the project); WikiExtractor runs for real."""

from __future__ import annotations

import bz2
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, run_snakemake, shared_file, tiny_config, write_config

from gpt2core.data.extract import extract_dump
from gpt2core.data.markup import MARKUP_KEYS, count_markup, markup_summary
from gpt2core.data.presplit import SCHEMA, presplit_shard
from gpt2core.data.shards import SPLITS, split_bounds, split_of, tokenize_shard
from gpt2core.data.siteinfo import template_namespace
from gpt2core.data.split_plan import MIN_DOCUMENTS, plan_splits
from gpt2core.data.tokenizer import heldout_figure
from gpt2core.data.wikiclean import clean_wikitext, resolve_variant

ENWIKI = "enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SAMPLE_DUMP = SAMPLE / "samplewiki-pages-articles.xml.bz2"
ZH_DUMP = SAMPLE / "zh" / "zhwiki-pages-articles.xml.bz2"
ZERO = dict.fromkeys(MARKUP_KEYS, 0)


def extracted_texts(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(folder.rglob("wiki_*")):
        for line in f.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            out[doc["title"]] = doc["text"]
    return out


def presplit_texts(parquet: Path) -> dict[str, str]:
    table = pq.read_table(parquet, columns=["title", "text"]).to_pydict()
    return dict(zip(table["title"], table["text"], strict=True))


def extract_and_presplit(dump: Path, tmp: Path, lang: str = "en", t2s: bool = False) -> tuple[dict, dict]:
    extract_dump(dump, tmp / "x")
    stats = presplit_shard([("p", tmp / "x")], tmp / "s.parquet", 0, 1, lang=lang, t2s=t2s, clean=True)
    return stats, presplit_texts(tmp / "s.parquet")


# ---------------------------------------------------------------- cleaning, unit
@pytest.mark.parametrize("body, shown", [
    ("zh-cn:域;zh-tw:体", "域"),
    ("zh-hant:抽象代數;zh-hans:抽象代数", "抽象代数"),
    ("zh-tw:甲;zh-hk:乙", "甲"),                       # no Simplified variant: the first one
    ("zh-hant:; zh-hans:;", ""),
    ("域", "域"),                                     # plain -{text}-: the text, not converted
    ("H|zh-cn:计算机;zh-tw:電腦", ""),                  # a conversion rule that displays nothing
    ("R|zh-cn", "zh-cn"),                             # raw
    ("A|zh-hans:软件;zh-hant:軟體", "软件"),
])
def test_variant_markup_resolves_to_simplified(body, shown):
    assert resolve_variant(body) == shown


def test_clean_wikitext_removes_leftovers_and_keeps_real_text():
    removed: Counter[str] = Counter()
    text = ("群、环、-{zh-cn:域;zh-tw:体}-等\n-{zh-hant:; zh-hans:;}-\nCO2 + H2O {{eqm}} H2CO3 {{foo|{{bar}}}} x\n"
            "Alabama () is a state. Call main() here.\n伽罗瓦（）是\n<onlyinclude>\nAgri\n</onlyinclude>\nEnd")
    assert clean_wikitext(text, removed) == (
        "群、环、域等\n\nCO2 + H2O ⇌ H2CO3 x\nAlabama is a state. Call main() here.\n伽罗瓦是\nAgri\nEnd")
    assert removed == {"variants": 2, "templates_expanded": 1, "templates": 2, "empty_brackets": 2, "tags": 2}


def test_count_markup_counts_every_kind():
    counts: Counter[str] = Counter()
    count_markup("AT&amp;T &lt;b&gt; &#39; &x {{a}} [[b]] -{c}- <ref name=x> () （） f()\n{| x\n|-\n|}\n| cell", counts)
    assert markup_summary(counts) == {"entities": 4, "template_open": 1, "template_close": 1, "link_open": 1,
                                      "link_close": 1, "variant_open": 1, "variant_close": 1, "table_rows": 3,
                                      "refs": 1, "empty_brackets": 3}
    assert markup_summary(Counter()) == ZERO


# ---------------------------------------------------------------- real dumps
def test_enwiki_excerpt_reaches_the_tokenizer_without_markup(tmp_path):
    dump = shared_file(ENWIKI)
    xml = bz2.decompress(dump.read_bytes()).decode()
    assert "[[AT&amp;T Inc.|AT&amp;T]]" in xml and "{{lang|" in xml and "{{eqm}}" in xml  # the cases are there
    stats, texts = extract_and_presplit(dump, tmp_path)
    raw = "\n".join(extracted_texts(tmp_path / "x").values())
    assert "&amp;" not in raw and "AT&T" in raw  # entities unescaped once, by WikiExtractor itself
    assert stats["markup"] == ZERO, stats
    assert stats["cleaned"]["empty_brackets"] > 0 and stats["cleaned"]["tags"] > 0
    assert "Telecommunications provider AT&T, formerly BellSouth" in texts["Alabama"]
    assert "CO2 + H2O ⇌ H2CO3 ⇌ H+ + HCO3−" in texts["Acid"]
    # {{lang|grc|ἀναρχία}} kept its text (it was dropped before)
    assert "ἀναρχία" in texts["Anarchism"]
    # {{convert|...}} keeps number and unit
    assert re.search(r"\b\d[\d,.]* (?:km|mi|ft|m|kg|lb)\b", "\n".join(texts.values()))


def test_sample_page_entities_inline_templates_and_tables(tmp_path):
    stats, texts = extract_and_presplit(SAMPLE_DUMP, tmp_path)
    page = texts["Telephone exchange"]
    assert stats["markup"] == ZERO, stats
    assert "A telephone exchange is a building" in page  # {{IPAc-en}} and its emptied brackets gone
    assert "(central téléphonique)" in page and "German name is Fernmeldeamt." in page
    assert "run by AT&T, and later by the firm of Hart & Sons" in page and "Standard & Poor's" in page
    assert "stood 3 km from" in page and "eight hours\u00a0each" in page
    assert "onlyinclude" not in page and "1899 || 40" not in page and "CO2 + H2O ⇌ H2CO3" in page


def test_zh_sample_variants_resolved_and_lang_text_kept(tmp_path):
    stats, texts = extract_and_presplit(ZH_DUMP, tmp_path, lang="zh", t2s=True)
    assert stats["markup"] == ZERO, stats
    assert stats["cleaned"]["variants"] == 5
    algebra, mathematician = texts["代数结构"], texts["数学家"]
    assert "群、环、域等抽象系统中" in algebra and "成为抽象代数的基础" in algebra
    assert "伽罗瓦（Évariste Galois）" in algebra and "构成一个域。" in algebra
    assert "欧拉（Leonhard Euler）" in mathematician and "工程师（Vaillant）" in mathematician
    assert "计算机的发明" in mathematician
    everything = "\n".join(texts.values())
    assert "（）" not in everything and "zh-" not in everything


def test_a_dump_without_siteinfo_is_read_with_default_namespaces(tmp_path, capsys):
    xml = bz2.decompress(SAMPLE_DUMP.read_bytes()).decode()
    bare = re.sub(r"\s*<siteinfo>.*?</siteinfo>", "", xml, count=1, flags=re.S)
    assert "<siteinfo>" not in bare
    (tmp_path / "bare.xml").write_text(bare, encoding="utf-8")
    counts = extract_dump(tmp_path / "bare.xml", tmp_path / "bare")
    assert "bare.xml: no <siteinfo>" in counts["warning"] and "bare.xml: no <siteinfo>" in capsys.readouterr().err
    full = extract_dump(SAMPLE_DUMP, tmp_path / "full")
    assert "warning" not in full and counts["articles"] == full["articles"] == 63
    assert extracted_texts(tmp_path / "bare") == extracted_texts(tmp_path / "full")
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["AA"]  # helper files not left behind


# ---------------------------------------------------------------- a valid set for every corpus
def write_ids(path: Path, ids: list[str]) -> Path:
    n = len(ids)
    pq.write_table(pa.table({"id": ids, "title": ids, "url": [""] * n, "text": ["x"] * n}, schema=SCHEMA), path)
    return path


def test_a_small_corpus_gets_one_valid_and_one_test_document_decided_by_ids(tmp_path):
    split, seed = [949, 50, 1], 1234
    bounds = split_bounds(split)
    ids = [i for i in (str(k) for k in range(1000)) if split_of(i, seed, bounds) == 0][:33]
    one = plan_splits([write_ids(tmp_path / "a.parquet", ids)], seed, split)
    assert one["drawn"] == {"train": 33, "valid": 0, "test": 0}
    assert sorted(one["moved"].values()) == ["test", "valid"] and one["warning"] is None
    # three shards holding the ids in another order: the same plan
    parts = [write_ids(tmp_path / f"{k}.parquet", ids[k::3][::-1]) for k in range(3)]
    assert plan_splits(parts, seed, split)["moved"] == one["moved"]
    # a corpus that drew both keeps its draw; a zero weight is respected
    assert plan_splits(parts, seed, [1, 1, 1])["moved"] == {}
    assert list(plan_splits(parts, seed, [949, 0, 1])["moved"].values()) == ["test"]


def test_a_too_small_corpus_warns_and_keeps_its_draw(tmp_path):
    ids = [str(k) for k in range(MIN_DOCUMENTS - 1)]
    plan = plan_splits([write_ids(tmp_path / "a.parquet", ids)], 1234, [1000, 1, 1], "tiny")
    assert plan["moved"] == {} and plan["drawn"]["valid"] == 0
    assert plan["warning"].startswith("warning: corpus tiny: 4 documents, too few") and "validation loss" in plan["warning"]


def test_tokenize_puts_moved_documents_in_their_planned_split(tmp_path):
    from gpt2core.data.tokenizer import train_bpe

    texts = [f"Document number {k} has some words in it." for k in range(12)]
    ids = [f"d{k}" for k in range(12)]
    parquet = tmp_path / "s.parquet"
    writer = pq.ParquetWriter(parquet, SCHEMA)
    writer.write_table(pa.table({"id": ids, "title": ids, "url": [""] * 12, "text": texts}, schema=SCHEMA))
    writer.add_key_value_metadata({b"wikigpt": json.dumps({"dropped": {}}).encode()})
    writer.close()
    train_bpe([[str(parquet)]], tmp_path / "tok.json", 300, 1, 10_000)
    drawn = [split_of(i, 1, split_bounds([1000, 1, 1])) for i in ids]
    assert drawn == [0] * 12
    stats = tokenize_shard(parquet, tmp_path / "tok.json", tmp_path / "out", [1000, 1, 1], 1,
                           moved={"d3": "valid", "d7": "test"})
    assert [stats["splits"][s]["documents"] for s in SPLITS] == [10, 1, 1]


def test_heldout_figure_carries_its_size_and_warns_when_small():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_tokens(list("abc "))
    small = heldout_figure(tok, ["abc abc"], "zh")
    assert (small["documents"], small["chars"]) == (1, 7)
    assert small["warning"].startswith("warning: tokenizer held-out zh: 1 documents, 7 characters")
    assert "warning" not in heldout_figure(tok, ["abc " * 5000] * 25, "en")


@pytest.mark.e2e
def test_every_corpus_in_the_manifest_has_valid_and_test_and_its_markup(tmp_path):
    config = tiny_config(presplit={"shards": 2, "min_chars": 20},
                         tokenizer={"kind": "bpe", "vocab_size": 1024, "min_frequency": 2},
                         data={"split": [949, 50, 1], "seed": 1234, "dtype": "uint16"})
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text("".join(json.dumps({"id": str(k), "text": f"A short note number {k} about tea."}) + "\n"
                            for k in range(3)), encoding="utf-8")
    config["corpora"] += [
        {"name": "zhwiki", "kind": "wikipedia", "lang": "zh", "t2s": True, "sources": [{"url": str(ZH_DUMP)}]},
        {"name": "notes", "kind": "jsonl", "lang": "en", "sources": [{"url": str(tiny)}]}]
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "results/data/manifest.json")
    manifest = json.loads((tmp_path / "results/data/manifest.json").read_text())
    sections = {c["name"]: c for c in manifest["corpora"]}
    for name in ("samplewiki", "zhwiki"):
        splits = sections[name]["splits"]
        assert splits["valid"]["documents"] >= 1 and splits["test"]["documents"] >= 1, (name, splits)
        assert sections[name]["markup"] == ZERO and sections[name]["warnings"] == []
    assert sections["zhwiki"]["split_plan"]["moved"]  # 42 pages at 949:50:1 drew no test document
    assert sections["zhwiki"]["cleaned"]["variants"] == 5
    notes = sections["notes"]
    assert notes["splits"]["valid"]["documents"] == 0 and len(notes["warnings"]) == 1
    assert "corpus notes: 3 documents, too few" in notes["warnings"][0]
    assert notes["warnings"][0] in manifest["warnings"] and notes["warnings"][0] in proc.stderr
    gather_log = (tmp_path / "logs/gather/gather.log").read_text()
    assert '"markup left"' in gather_log and "corpus notes: 3 documents" in gather_log
    assert any(w.startswith("warning: tokenizer held-out") for w in manifest["warnings"])
    run_snakemake(tmp_path, "--report", "report.html", "results/data/manifest.json")
    html = (tmp_path / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "manifest.json" in html and "markup" in html  # the report's Data section


def test_the_template_table_takes_the_dumps_own_template_namespace(tmp_path):
    """A dewiki-style dump names namespace 10 `Vorlage`: the table is written under that name, so
    `{{lang|fr|...}}` still finds its entry."""
    xml = bz2.decompress(SAMPLE_DUMP.read_bytes()).decode()
    assert template_namespace(SAMPLE_DUMP) == "Template"
    german = xml.replace('key="10" case="first-letter">Template<', 'key="10" case="first-letter">Vorlage<')
    german = german.replace("<title>Template:", "<title>Vorlage:")
    (tmp_path / "de.xml").write_text(german, encoding="utf-8")
    assert template_namespace(tmp_path / "de.xml") == "Vorlage"
    extract_dump(tmp_path / "de.xml", tmp_path / "de")
    assert "(central téléphonique)" in extracted_texts(tmp_path / "de")["Telephone exchange"]
