"""Corpus sources (gpt2core.data.sources): JSON lines plain/.gz/.zst, folders and globs as parts, MNBVC
records (paragraph order, duplicates dropped), one-line errors naming file and line, the weighted BPE
sample and the per-corpus manifest."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from gpt2core.data.download import expand_source
from gpt2core.data.sources import extract_part
from gpt2core.data.sources.jsonl import jsonl_documents
from gpt2core.data.sources.mnbvc import mnbvc_documents
from gpt2core.data.tokenizer import is_heldout, sample_budgets
from gpt2core.errors import WikiGPTError

SAMPLE_MNBVC = Path(__file__).resolve().parents[1] / "resources/sample/zh/mnbvc-sample.jsonl"
RECORDS = [{"id": 7, "title": "A", "text": "first text"}, {"text": "no id here", "url": "u"},
           {"id": "x", "meta": {"body": "nested"}, "text": "third"}]


def _lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


@pytest.mark.parametrize("compress", ["plain", "gz", "zst"])
def test_jsonl_plain_gz_zst_read_the_same(tmp_path, compress):
    raw = _lines(RECORDS) + b"\n"  # a blank line is skipped
    data = {"plain": raw, "gz": gzip.compress(raw), "zst": zstandard.ZstdCompressor().compress(raw)}[compress]
    path = tmp_path / f"c.jsonl.{compress}"
    path.write_bytes(data)
    counts: dict = {}
    docs = list(jsonl_documents(path, "c.jsonl", "text", counts))
    assert [d["id"] for d in docs] == ["c.jsonl:7", "c.jsonl:2", "c.jsonl:x"]
    assert [d["text"] for d in docs] == ["first text", "no id here", "third"]
    assert docs[0]["title"] == "A" and docs[1]["url"] == "u" and counts == {"records": 3}


def test_jsonl_text_field_may_be_nested():
    docs = list(jsonl_documents_from([RECORDS[2]], "meta.body"))
    assert docs[0]["text"] == "nested"


def jsonl_documents_from(records, field):
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as fh:
        fh.write(_lines(records))
    return list(jsonl_documents(fh.name, "p", field))


@pytest.mark.parametrize("line, message", [
    (b'{"title": "no text"}', r"c\.jsonl:2: no text field 'text'"),
    (b'{"text": 5}', r"c\.jsonl:2: a non-string \(int\) text field 'text'"),
    (b'[1, 2]', r"c\.jsonl:2: not a JSON object"),
    (b'{"text": "cut', r"c\.jsonl:2: malformed JSON"),
    (b'{"text": "caf\xe9"}', r"c\.jsonl:2: invalid UTF-8"),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_bytes(_lines(RECORDS[:1]) + line + b"\n")
    out = tmp_path / "extract"
    with pytest.raises(WikiGPTError, match=message):
        extract_part("jsonl", path, out, "c.jsonl")
    assert not out.exists() and not list(tmp_path.glob(".extract*"))


def test_truncated_zst_is_a_one_line_error(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(_lines(RECORDS * 50))[:-20])
    with pytest.raises(WikiGPTError, match=r"c\.jsonl\.zst: corrupt"):
        list(jsonl_documents(path, "c", "text"))


def test_extract_writes_wikiextractor_layout(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(_lines(RECORDS))
    counts = extract_part("jsonl", path, tmp_path / "out", "c.jsonl")
    assert counts == {"records": 3, "documents": 3, "nonempty": 3}
    lines = (tmp_path / "out/AA/wiki_00").read_text(encoding="utf-8").splitlines()
    assert [set(json.loads(ln)) for ln in lines] == [{"id", "title", "url", "text"}] * 3


def test_all_empty_source_is_an_error(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(_lines([{"text": " "}]))
    with pytest.raises(WikiGPTError, match="e.jsonl: yielded zero documents with text"):
        extract_part("jsonl", path, tmp_path / "out", "e.jsonl")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- MNBVC
def _record(paragraphs, **extra) -> dict:
    return {"文件名": "f.txt", "是否待查文件": False, "是否重复文件": False, "段落": paragraphs, **extra}


def _para(n, text, dup=False) -> dict:
    return {"行号": n, "是否重复": dup, "是否跨文件重复": False, "md5": "", "内容": text}


def test_mnbvc_joins_in_line_order_and_drops_duplicates(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(_lines([
        _record([_para(3, "第三段。"), _para(1, "第一段。"), _para(2, "重复的段落。", dup=True), _para(4, "第四段。")]),
        _record([_para(1, "整个文件都重复了。")], 是否重复文件=True),
        _record([_para(1, "另一份文件。")], 文件名="dir/other.txt"),
    ]))
    counts: dict = {}
    docs = list(mnbvc_documents(path, "m.jsonl", counts))
    assert [d["text"] for d in docs] == ["第一段。\n第三段。\n第四段。", "另一份文件。"]
    assert [d["id"] for d in docs] == ["m.jsonl:1", "m.jsonl:3"] and docs[1]["title"] == "other"
    assert counts == {"records": 3, "duplicate_files": 1, "paragraphs": 6, "duplicate_paragraphs": 1}


@pytest.mark.parametrize("record, message", [
    ({"文件名": "f.txt", "段落数": 2}, r"m\.jsonl:2: MNBVC record without 段落"),
    ({"段落": "text"}, r"m\.jsonl:2: MNBVC record's 段落 is not a list"),
    ({"段落": [{"行号": 1}]}, r"m\.jsonl:2: MNBVC 段落\[0\] lacks an integer 行号 and a string 内容"),
])
def test_mnbvc_bad_record_names_file_and_line(tmp_path, record, message):
    path = tmp_path / "m.jsonl"
    path.write_bytes(_lines([_record([_para(1, "好的。")]), record]))
    with pytest.raises(WikiGPTError, match=message):
        extract_part("mnbvc", path, tmp_path / "out", "m.jsonl")
    assert not (tmp_path / "out").exists()


def test_shipped_mnbvc_sample_reads():
    counts: dict = {}
    docs = list(mnbvc_documents(SAMPLE_MNBVC, "s", counts))
    assert counts["duplicate_files"] == 1 and counts["duplicate_paragraphs"] >= 3
    assert len(docs) == counts["records"] - 1
    assert any("廚房" in d["text"] for d in docs)  # a Traditional record, kept as is without t2s


# ---------------------------------------------------------------- sources as parts
def test_folder_and_local_glob_become_one_part_per_file(tmp_path):
    for name in ("b.jsonl", "a.jsonl.gz", "sub/c.jsonl.zst", ".hidden.jsonl", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"{}\n")
    parts = expand_source({"url": str(tmp_path)})
    assert [Path(p["url"]).name for p in parts] == ["a.jsonl.gz", "b.jsonl", "c.jsonl.zst"]
    assert expand_source({"url": f"{tmp_path}/*.jsonl"}) == [{"url": str(tmp_path / "b.jsonl")}]
    with pytest.raises(WikiGPTError, match="no file matches"):
        expand_source({"url": f"{tmp_path}/*.parquet"})
    (tmp_path / "sub/b.jsonl").write_bytes(b"{}\n")
    with pytest.raises(WikiGPTError, match="two files are named b.jsonl"):
        expand_source({"url": str(tmp_path)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(WikiGPTError, match="folder holds no"):
        expand_source({"url": str(tmp_path / "empty")})


# ---------------------------------------------------------------- tokenizer sample
def test_sample_budgets_follow_weights_and_heldout_is_a_fixed_tenth():
    assert sample_budgets(1000, [1.0, 1.0]) == [1000, 1000]
    assert sample_budgets(1000, [2.0, 1.0, 0.5]) == [1000, 500, 250]
    share = sum(is_heldout(str(i)) for i in range(20000)) / 20000
    assert 0.09 < share < 0.11
    assert is_heldout("29") and not is_heldout("10")  # ids alone decide
