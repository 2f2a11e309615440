"""A dump's `<siteinfo>`: the template namespace's name, and a default one for a dump that has none.

WikiExtractor takes the namespaces from `<siteinfo>`; without it every page looks like a template and a
hand-made excerpt yields zero articles. Such a dump is read with MediaWiki's canonical (English) namespace
names, through an uncompressed copy with a default `<siteinfo>` put after the `<mediawiki>` tag.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from gpt2core.errors import WikiGPTError

HEAD_LIMIT = 4 << 20  # <siteinfo> comes before the first <page>, in the first few KiB of a real dump
_NS10 = re.compile(rb'<namespace[^>]*\bkey="10"[^>]*>([^<]+)</namespace>')
_ROOT = re.compile(rb"<mediawiki\b[^>]*>")
CANONICAL_NAMESPACES = [(-2, "Media"), (-1, "Special"), (0, ""), (1, "Talk"), (2, "User"), (3, "User talk"),
                        (4, "Project"), (5, "Project talk"), (6, "File"), (7, "File talk"), (8, "MediaWiki"),
                        (9, "MediaWiki talk"), (10, "Template"), (11, "Template talk"), (12, "Help"),
                        (13, "Help talk"), (14, "Category"), (15, "Category talk"), (828, "Module"),
                        (829, "Module talk")]


def _head(path: Path) -> bytes:
    """The dump's bytes up to its first <page> (at most HEAD_LIMIT)."""
    from gpt2core.data.extract import _open

    head = b""
    with _open(path) as fh:
        while len(head) < HEAD_LIMIT and b"<page>" not in head:
            block = fh.read(1 << 16)
            if not block:
                break
            head += block
    return head.split(b"<page>", 1)[0]


def template_namespace(path: str | Path) -> str | None:
    """The dump's name for namespace 10 (`Template`, `Vorlage`, ...), or None when it has no <siteinfo>."""
    head = _head(Path(path))
    if b"<siteinfo>" not in head:
        return None
    m = _NS10.search(head)
    return m.group(1).decode("utf-8", "replace").strip() if m else "Template"


def default_siteinfo() -> bytes:
    names = "".join(f'      <namespace key="{k}" case="first-letter">{n}</namespace>\n' if n
                    else f'      <namespace key="{k}" case="first-letter" />\n' for k, n in CANONICAL_NAMESPACES)
    return (f"\n  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <case>first-letter</case>\n"
            f"    <namespaces>\n{names}    </namespaces>\n  </siteinfo>\n").encode()


def with_default_siteinfo(dump: str | Path, out: str | Path) -> Path:
    """Copy `dump` (uncompressed) to `out` with a default <siteinfo> after its <mediawiki> tag; streams, so
    memory stays flat whatever the dump's size."""
    from gpt2core.data.extract import _open

    out = Path(out)
    with _open(Path(dump)) as src, open(out, "wb") as dst:
        head = src.read(1 << 16)
        while not _ROOT.search(head) and len(head) < HEAD_LIMIT:
            block = src.read(1 << 16)
            if not block:
                break
            head += block
        m = _ROOT.search(head)
        if m is None:  # check_dump already refused a file without <mediawiki>
            raise WikiGPTError(f"{dump}: not a MediaWiki XML dump (no <mediawiki> tag)")
        dst.write(head[:m.end()] + default_siteinfo() + head[m.end():])
        shutil.copyfileobj(src, dst, 1 << 20)
    return out
