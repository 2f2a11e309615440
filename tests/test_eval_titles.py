"""Decontamination titles: which WikiText lines are titles, how they are detokenized, and that the real
workflow drops exactly the matching articles from a sample dump."""

from __future__ import annotations

import bz2
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import run_snakemake, shared_file, tiny_config, write_config

from gpt2core.data.presplit import shard_stats
from gpt2core.errors import WikiGPTError
from gpt2core.eval.titles import detokenize_title, extract_titles, heading_title, write_titles

WIKITEXT = (
    " \n = Honey bee = \n \n Bees make honey . \n \n = = Honey = = \n \n Not a title . \n"
    " \n \n = Kite ( toy ) = \n \n A kite flies . It costs 1 @,@ 000 yen \n"
    " = 1 henry and capacitance C = \n 1 farad . \n"  # an equation fragment, not a heading: text follows
    " \n \n = Dick <unk> = \n \n Unknown name . \n"
    " \n \n = Kirby 's Block Ball = \n \n A game . \n"
    " \n \n = Ise @-@ class battleship = \n \n Ships . \n"
    " \n \n = Honey bee = \n \n Listed once . \n"
)
EXPECTED = ["Honey bee", "Kite (toy)", "Kirby's Block Ball", "Ise-class battleship"]


@pytest.mark.parametrize(("raw", "title"), [
    ("Tropical Storm Allison ( 1989 )", "Tropical Storm Allison (1989)"),
    ("Ise @-@ class battleship", "Ise-class battleship"),
    ("Temple Beth Israel ( Eugene , Oregon )", "Temple Beth Israel (Eugene, Oregon)"),
    ("Weevils Wobble But They Don 't Go Down", "Weevils Wobble But They Don't Go Down"),
    ("Kirby 's Block Ball", "Kirby's Block Ball"),
    ("The Portage to San Cristobal of A.H.", "The Portage to San Cristobal of A.H."),
    ("No. 20 Squadron RAAF", "No. 20 Squadron RAAF"),
    ("Battle of Dürenstein", "Battle of Dürenstein"),
])
def test_title_detokenization(raw: str, title: str) -> None:
    assert detokenize_title(raw) == title


def test_only_level_one_headings_are_titles() -> None:
    assert heading_title(" = Du Fu = \n") == "Du Fu"
    assert heading_title(" = = Early life = = \n") is None
    assert heading_title(" = = = Poems = = = \n") is None
    assert heading_title(" Du Fu was a poet . \n") is None


def test_extract_titles(tmp_path: Path) -> None:
    path = tmp_path / "w.tokens"
    path.write_text(WIKITEXT, encoding="utf-8")
    assert extract_titles(path) == (EXPECTED, 1)
    out = tmp_path / "titles.txt"
    assert write_titles(path, out) == 4
    assert out.read_text(encoding="utf-8") == "".join(f"{t}\n" for t in EXPECTED)


def test_real_wikitext103_titles() -> None:
    titles, unk = extract_titles(shared_file("wikitext/wiki.test.tokens"))
    assert len(titles) == 53 and unk == 7  # 60 articles (one listed twice): 7 hold <unk>
    assert titles[0] == "Robert Boulter" and "Temple Beth Israel (Eugene, Oregon)" in titles
    assert not any(t.startswith("1 ") for t in titles)  # the two equation fragments are not titles


def test_not_wikitext_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("just text\n", encoding="utf-8")
    with pytest.raises(WikiGPTError, match="plain.txt: no ' = Title = ' lines"):
        extract_titles(path)


def page(page_id: int, title: str, body: str) -> str:
    return (f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>\n    <revision>\n"
            f"      <id>{page_id + 1000}</id>\n      <timestamp>2020-01-01T00:00:00Z</timestamp>\n"
            "      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"      <text xml:space=\"preserve\">{body}</text>\n    </revision>\n  </page>\n")


def write_dump(path: Path, titles: list[str]) -> Path:
    pages = "".join(
        page(i + 1, t, f"'''{t}''' is the subject of this article. It has a few sentences of text. "
                       f"This one is number {i + 1}. The end.")
        for i, t in enumerate(titles))
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n'
           "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>enwiki</dbname>\n"
           "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n    <generator>MediaWiki 1.35</generator>\n"
           "    <case>first-letter</case>\n    <namespaces>\n"
           '      <namespace key="0" case="first-letter" />\n'
           '      <namespace key="10" case="first-letter">Template</namespace>\n'
           '      <namespace key="828" case="first-letter">Module</namespace>\n    </namespaces>\n  </siteinfo>\n'
           f"{pages}</mediawiki>\n")
    path.write_bytes(bz2.compress(xml.encode("utf-8")))
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("decontaminate", [True, False])
def test_workflow_drops_exactly_the_matching_articles(tmp_path: Path, decontaminate: bool) -> None:
    dump_titles = EXPECTED + ["Honey", "Kite", "Kirby", "Battleship", "Bee", "Dick"]
    dump = write_dump(tmp_path / "testwiki-pages-articles.xml.bz2", dump_titles)
    wikitext = tmp_path / "wiki.test.tokens"
    wikitext.write_text(WIKITEXT, encoding="utf-8")
    config = tiny_config(
        corpora=[{"name": "testwiki", "kind": "wikipedia", "sources": [{"url": str(dump)}]}],
        presplit={"shards": 1, "min_chars": 0},
        eval={"wiki103": {"source": {"url": str(wikitext)}, "decontaminate": decontaminate},
              "lambada": {"enabled": False}},
    )
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "data/presplit/testwiki/00000.parquet")
    kept = pq.read_table(tmp_path / "data/presplit/testwiki/00000.parquet").column("title").to_pylist()
    if decontaminate:
        assert sorted(kept) == sorted(set(dump_titles) - set(EXPECTED))
        listed = (tmp_path / "data/eval/wiki103_titles.txt").read_text(encoding="utf-8").splitlines()
        assert listed == EXPECTED
    else:
        assert sorted(kept) == sorted(dump_titles)
        assert not (tmp_path / "data/eval/wiki103_titles.txt").exists()
    dropped = shard_stats(tmp_path / "data/presplit/testwiki/00000.parquet")["dropped"]
    assert dropped.get("decontaminated", 0) == (len(EXPECTED) if decontaminate else 0)
