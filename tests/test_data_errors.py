"""Bad input to the data DAG, one test each: a one-line error naming the file, a non-zero exit, nothing
under the final output name, earlier good outputs untouched. Real Snakemake, real WikiExtractor."""

from __future__ import annotations

import bz2
import hashlib
from pathlib import Path

import pytest
from conftest import SAMPLE, run_snakemake, write_config

pytestmark = pytest.mark.e2e
SAMPLE_DUMP = SAMPLE / "samplewiki-pages-articles.xml.bz2"
HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">\n<siteinfo>\n'
          '<namespaces><namespace key="0" case="first-letter" /></namespaces>\n</siteinfo>\n')


def config_for(source: dict, **sections) -> dict:
    return {"corpora": [{"name": "bad", "sources": [source]}], **sections}


def error_lines(proc) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]


def fails(workdir: Path, config: dict, target: str) -> str:
    """Run `target`, expect failure; return the single error line."""
    write_config(workdir, config)
    proc = run_snakemake(workdir, target, check=False)
    assert proc.returncode != 0
    lines = set(error_lines(proc))
    assert len(lines) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (workdir / target).exists()
    assert not [p for p in workdir.rglob("*") if ".tmp-" in p.name or p.name.endswith(".part")]
    return lines.pop()


def write_dump(path: Path, xml: str) -> Path:
    path.write_bytes(bz2.compress(xml.encode()))
    return path


@pytest.mark.parametrize("kind", ["truncated", "not_xml", "empty", "redirects_only"])
def test_bad_dump_fails_extract(tmp_path, kind):
    dump = tmp_path / f"{kind}.xml.bz2"
    if kind == "truncated":
        data = SAMPLE_DUMP.read_bytes()
        dump.write_bytes(data[: len(data) // 2])
        expect = "corrupt or truncated"
    elif kind == "not_xml":
        write_dump(dump, "id,title,text\n1,Bread,Bread is food.\n")
        expect = "not a MediaWiki XML dump"
    elif kind == "empty":
        write_dump(dump, HEADER + "</mediawiki>\n")
        expect = "holds no <page>"
    else:
        write_dump(dump, HEADER + "<page><title>A</title><ns>0</ns><id>1</id><redirect title=\"B\" />"
                   "<revision><id>2</id><text>#REDIRECT [[B]]</text></revision></page>\n</mediawiki>\n")
        expect = "yielded zero articles"
    work = tmp_path / "w"
    work.mkdir()
    line = fails(work, config_for({"url": str(dump)}), f"data/extract/bad/{dump.name}")
    assert str(dump.name) in line and expect in line
    downloaded = work / "data/downloads/bad" / dump.name
    assert downloaded.read_bytes() == dump.read_bytes()  # the good earlier output stays


def test_checksum_mismatch_leaves_nothing(tmp_path):
    line = fails(tmp_path, config_for({"url": f"file://{SAMPLE_DUMP}", "sha1": "0" * 40}),
                 f"data/downloads/bad/{SAMPLE_DUMP.name}")
    assert "sha1 mismatch" in line and hashlib.sha1(SAMPLE_DUMP.read_bytes()).hexdigest() in line


def test_unreachable_url(tmp_path):
    line = fails(tmp_path, config_for({"url": "http://127.0.0.1:9/dump.xml.bz2"}), "data/downloads/bad/dump.xml.bz2")
    assert "cannot download http://127.0.0.1:9/dump.xml.bz2" in line


@pytest.mark.parametrize("bad, expect", [(b'{"id": "9", "title": "X", "text": \n', "malformed JSON"),
                                         (b'{"id": "9", "title": "X", "text": "\xff\xfe"}\n', "invalid UTF-8")])
def test_bad_extracted_line_fails_presplit(tmp_path, bad, expect):
    config = config_for({"url": str(SAMPLE_DUMP)}, presplit={"shards": 1})
    write_config(tmp_path, config)
    part = tmp_path / "data/extract/bad" / SAMPLE_DUMP.name
    run_snakemake(tmp_path, str(part.relative_to(tmp_path)))
    victim = sorted(part.rglob("wiki_*"))[-1]
    lines = victim.read_bytes().count(b"\n")
    with open(victim, "ab") as fh:
        fh.write(bad)
    line = fails(tmp_path, config, "data/presplit/bad/00000.parquet")
    assert f"{victim.relative_to(tmp_path)}:{lines + 1}: {expect}" in line
    assert (tmp_path / "data/downloads/bad" / SAMPLE_DUMP.name).exists()


def test_vocabulary_too_large_for_uint16_fails_before_any_job(tmp_path):
    config = config_for({"url": str(SAMPLE_DUMP)}, tokenizer={"kind": "bpe", "vocab_size": 70000},
                        data={"dtype": "uint16"})
    line = fails(tmp_path, config, "results/data/manifest.json")
    assert "tokenizer.vocab_size 70000 does not fit data.dtype uint16" in line
    assert not (tmp_path / "data").exists()
    config["data"]["dtype"] = "uint32"
    write_config(tmp_path, config)
    assert run_snakemake(tmp_path, "-n", "results/data/manifest.json").returncode == 0


@pytest.mark.parametrize("section, expect", [
    ({"presplit": {"shards": 2, "bogus": 1}}, "unknown key 'bogus' in presplit"),
    ({"presplit": {"shards": "four"}}, "presplit.shards: 'four' is not of type 'integer'"),
])
def test_bad_config_named_before_any_job(tmp_path, section, expect):
    line = fails(tmp_path, config_for({"url": str(SAMPLE_DUMP)}, **section), "results/data/manifest.json")
    assert expect in line
    assert not (tmp_path / "data").exists()
