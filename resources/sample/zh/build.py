"""Build the Chinese samples in this folder from their readable sources (all text written for this project).

- zhwiki-pages-articles.xml.bz2: a zhwiki-format MediaWiki export (schema 0.10) of the pages in
  zhwiki-src/*.wiki (a `key: value` header: title, id, ns, redirect; `---`; the wikitext, one paragraph a
  line, as zhwiki writes Chinese). Several pages are in Traditional characters, to show `t2s` at work.
- mnbvc-sample.jsonl: MNBVC common-format records, one per mnbvc-src/*.txt file, one paragraph a line;
  a line starting with `[重复]` becomes a paragraph flagged 是否重复, a file named `*chongfu*` a record
  flagged 是否重复文件. 04-chufang.txt is in Traditional characters (its corpus keeps them: no t2s).
Fixed timestamps and field order, so the bytes are reproducible. Rebuild: python resources/sample/zh/build.py
"""

from __future__ import annotations

import bz2
import hashlib
import json
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent
NAMESPACES = [(0, ""), (1, "Talk"), (2, "User"), (4, "Wikipedia"), (6, "File"), (10, "Template"),
              (14, "Category"), (828, "Module")]
DUP_MARK = "[重复]"


def read_page(path: Path) -> dict:
    head, _, body = path.read_text(encoding="utf-8").partition("\n---\n")
    page = dict(line.split(": ", 1) for line in head.splitlines() if line.strip())
    page["text"] = body.strip() + "\n"
    return page


def page_xml(page: dict) -> str:
    text = page["text"]
    sha1 = hashlib.sha1(text.encode("utf-8")).hexdigest()
    redirect = f"    <redirect title={quoteattr(page['redirect'])} />\n" if "redirect" in page else ""
    return (
        f"  <page>\n    <title>{escape(page['title'])}</title>\n    <ns>{page.get('ns', '0')}</ns>\n"
        f"    <id>{page['id']}</id>\n{redirect}    <revision>\n      <id>{int(page['id']) * 10 + 1}</id>\n"
        "      <timestamp>2026-01-01T00:00:00Z</timestamp>\n"
        "      <contributor>\n        <username>Sample editors</username>\n        <id>1</id>\n"
        "      </contributor>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f"      <text xml:space=\"preserve\" bytes=\"{len(text.encode('utf-8'))}\">{escape(text)}</text>\n"
        f"      <sha1>{sha1}</sha1>\n    </revision>\n  </page>\n"
    )


def build_zhwiki() -> bytes:
    pages = sorted((read_page(p) for p in (HERE / "zhwiki-src").glob("*.wiki")), key=lambda p: int(p["id"]))
    namespaces = "".join(f'      <namespace key="{k}" case="first-letter"'
                         + (f">{name}</namespace>\n" if name else " />\n") for k, name in NAMESPACES)
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ '
           'http://www.mediawiki.org/xml/export-0.10.xsd" version="0.10" xml:lang="zh">\n'
           "  <siteinfo>\n    <sitename>维基百科</sitename>\n    <dbname>zhwiki</dbname>\n"
           "    <base>https://zh.wikipedia.org/wiki/Wikipedia:首页</base>\n"
           "    <generator>MediaWiki 1.27.0</generator>\n    <case>first-letter</case>\n"
           f"    <namespaces>\n{namespaces}    </namespaces>\n  </siteinfo>\n"
           + "".join(page_xml(p) for p in pages) + "</mediawiki>\n")
    return bz2.compress(xml.encode("utf-8"), 9)


def mnbvc_record(path: Path) -> dict:
    paragraphs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        dup = line.startswith(DUP_MARK)
        content = line[len(DUP_MARK):] if dup else line
        paragraphs.append({"行号": n, "是否重复": dup, "是否跨文件重复": False,
                           "md5": hashlib.md5(content.encode("utf-8")).hexdigest(), "内容": content})
    size = sum(len(p["内容"].encode("utf-8")) for p in paragraphs)
    return {"文件名": path.name, "是否待查文件": False, "是否重复文件": "chongfu" in path.name,
            "文件大小": size, "simhash": int(hashlib.md5(path.name.encode()).hexdigest()[:15], 16),
            "最长段落长度": max(len(p["内容"]) for p in paragraphs), "段落数": len(paragraphs),
            "去重段落数": sum(not p["是否重复"] for p in paragraphs), "低质量段落数": 0,
            "段落": paragraphs}


def build_mnbvc() -> bytes:
    records = [mnbvc_record(p) for p in sorted((HERE / "mnbvc-src").glob("*.txt"))]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


if __name__ == "__main__":
    (HERE / "zhwiki-pages-articles.xml.bz2").write_bytes(build_zhwiki())
    (HERE / "mnbvc-sample.jsonl").write_bytes(build_mnbvc())
    print(f"wrote {HERE}/zhwiki-pages-articles.xml.bz2 and mnbvc-sample.jsonl")
