"""Build resources/sample/samplewiki-pages-articles.xml.bz2 from the readable pages in samplewiki-src/.

Each `samplewiki-src/*.wiki` file is one page: a header of `key: value` lines (title, id, ns, and
`redirect` for a redirect page), a `---` line, then the wikitext. The output is a MediaWiki export
(schema 0.10, like a real pages-articles dump) with fixed timestamps, so the bytes are reproducible.
Rebuild after editing a page:  python resources/sample/samplewiki-build.py
"""

from __future__ import annotations

import bz2
import hashlib
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent
SRC = HERE / "samplewiki-src"
OUT = HERE / "samplewiki-pages-articles.xml.bz2"
NAMESPACES = [(-2, "Media"), (-1, "Special"), (0, ""), (1, "Talk"), (2, "User"), (3, "User talk"),
              (4, "Samplewiki"), (5, "Samplewiki talk"), (6, "File"), (7, "File talk"), (10, "Template"),
              (11, "Template talk"), (12, "Help"), (13, "Help talk"), (14, "Category"), (15, "Category talk"),
              (828, "Module"), (829, "Module talk")]


_BLOCK_START = tuple("*#:;|{}!=<")


def _is_prose(line: str) -> bool:
    return bool(line.strip()) and not line.startswith(_BLOCK_START) and not line.startswith("[[Category:")


def unwrap(body: str) -> str:
    """Join the source's wrapped lines, as MediaWiki joins them into one paragraph (or list item)."""
    out: list[str] = []
    for line in body.splitlines():
        prev = out[-1] if out else ""
        if _is_prose(line) and prev.strip() and (_is_prose(prev) or prev.startswith(("*", "#"))):
            out[-1] = f"{prev} {line.strip()}"
        else:
            out.append(line.rstrip())
    return "\n".join(out)


def read_page(path: Path) -> dict:
    head, _, body = path.read_text(encoding="utf-8").partition("\n---\n")
    page = dict(line.split(": ", 1) for line in head.splitlines() if line.strip())
    page["text"] = unwrap(body.strip()) + "\n"
    return page


def page_xml(page: dict) -> str:
    text = page["text"]
    sha1 = hashlib.sha1(text.encode("utf-8")).hexdigest()
    redirect = f"    <redirect title={quoteattr(page['redirect'])} />\n" if "redirect" in page else ""
    return (
        "  <page>\n"
        f"    <title>{escape(page['title'])}</title>\n"
        f"    <ns>{page.get('ns', '0')}</ns>\n"
        f"    <id>{page['id']}</id>\n"
        f"{redirect}"
        "    <revision>\n"
        f"      <id>{int(page['id']) * 10 + 1}</id>\n"
        "      <timestamp>2026-01-01T00:00:00Z</timestamp>\n"
        "      <contributor>\n        <username>Samplewiki editors</username>\n        <id>1</id>\n"
        "      </contributor>\n"
        "      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f"      <text xml:space=\"preserve\" bytes=\"{len(text.encode('utf-8'))}\">{escape(text)}</text>\n"
        f"      <sha1>{sha1}</sha1>\n"
        "    </revision>\n"
        "  </page>\n"
    )


def build() -> str:
    pages = sorted((read_page(p) for p in SRC.glob("*.wiki")), key=lambda p: int(p["id"]))
    namespaces = "".join(
        f'      <namespace key="{k}" case="first-letter"'
        + (f">{name}</namespace>\n" if name else " />\n") for k, name in NAMESPACES)
    return (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ '
        'http://www.mediawiki.org/xml/export-0.10.xsd" version="0.10" xml:lang="en">\n'
        "  <siteinfo>\n    <sitename>Samplewiki</sitename>\n    <dbname>samplewiki</dbname>\n"
        "    <base>https://samplewiki.example.org/wiki/Main_Page</base>\n"
        "    <generator>MediaWiki 1.27.0</generator>\n    <case>first-letter</case>\n"
        f"    <namespaces>\n{namespaces}    </namespaces>\n  </siteinfo>\n"
        + "".join(page_xml(p) for p in pages)
        + "</mediawiki>\n"
    )


if __name__ == "__main__":
    OUT.write_bytes(bz2.compress(build().encode("utf-8"), 9))
    print(f"wrote {OUT}")
