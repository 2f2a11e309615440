"""Run WikiExtractor on one dump part, and refuse what it would silently get wrong.

WikiExtractor carries on after many problems (a non-XML file or an XML file cut short gives a clean exit
with fewer or zero articles), so the dump is first checked by a streaming scan (bz2 integrity, a
`<mediawiki>` root, a closing `</mediawiki>`, at least one page), and WikiExtractor's own exit report is
checked against the files it wrote. WikiExtractor runs with `--html-safe ""` (its default escapes `&`, `<`
and `>`, so the model learnt `AT&amp;T`) and `--templates` naming gpt2core.data.templates' table (inline
templates keep their text); a dump without `<siteinfo>` is read with the default namespaces, with a warning.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
import sys
from pathlib import Path

from gpt2core.data.siteinfo import template_namespace, with_default_siteinfo
from gpt2core.data.templates import write_template_file
from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_dir
from gpt2core.watch import Limits, run_watched

CHUNK = 1 << 20
_EXIT_RE = re.compile(r"REDUCER_EXIT (clean|incomplete)\b(?:: wrote (\d+) article)?")


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic == b"BZh":
        return bz2.open(path, "rb")
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def check_dump(path: str | Path) -> int:
    """Stream the whole dump once; return its number of <page> elements or raise naming the file."""
    path = Path(path)
    pages = 0
    head = b""
    tail = b""
    try:
        with _open(path) as fh:
            while block := fh.read(CHUNK):
                if len(head) < 4096:
                    head += block[:4096]
                pages += (tail[-8:] + block).count(b"<page>") - tail[-8:].count(b"<page>")
                tail = (tail + block)[-4096:]
    except (OSError, EOFError, ValueError) as exc:
        raise WikiGPTError(f"{path}: corrupt or truncated compressed file ({exc})") from None
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<?xml"):
        start = start[start.find(b"?>") + 2:].lstrip()
    if not start.startswith(b"<mediawiki"):
        raise WikiGPTError(f"{path}: not a MediaWiki XML dump (does not start with <mediawiki>)")
    if not tail.rstrip().endswith(b"</mediawiki>"):
        raise WikiGPTError(f"{path}: truncated XML (no closing </mediawiki>)")
    if pages == 0:
        raise WikiGPTError(f"{path}: dump holds no <page>")
    return pages


def _count_lines(outdir: Path) -> tuple[int, int]:
    """(articles, articles with non-empty text) across WikiExtractor's JSON files."""
    total = nonempty = 0
    for f in sorted(outdir.rglob("wiki_*")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    total += 1
                    nonempty += bool(json.loads(line)["text"].strip())
    return total, nonempty


def _notable(line: str) -> bool:
    """Lines of WikiExtractor's output kept for the verdict (the rest only goes to the log)."""
    return "REDUCER_EXIT" in line or line.startswith(("ERROR", "Traceback")) or "Error:" in line


_EXCEPTION_RE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")


def _problem(kept: list[str]) -> str | None:
    """The first problem WikiExtractor reported: for a traceback its cause (the exception line that ends it,
    e.g. UnicodeDecodeError on invalid UTF-8), not its first line."""
    for i, line in enumerate(kept):
        if line.startswith("Traceback"):
            return next((c for c in kept[i + 1:] if _EXCEPTION_RE.match(c)), line)
        if line.startswith("ERROR") or "Error:" in line:
            return line
    return None


def extract_dump(dump: str | Path, outdir: str | Path, processes: int = 1, log: str | Path | None = None,
                 limits: Limits | None = None) -> dict:
    """WikiExtractor --json on `dump` into `outdir` (written atomically); returns counts for the log.
    WikiExtractor runs under a deadline and a watchdog (gpt2core.watch; config limits.extract_*)."""
    dump = Path(dump)
    pages = check_dump(dump)
    limits = limits or Limits()
    namespace = template_namespace(dump)
    warning = None
    with atomic_dir(outdir) as tmp:
        out = tmp / "text"
        source = dump
        if namespace is None:
            warning = f"warning: {dump}: no <siteinfo>; read with MediaWiki's default namespaces"
            print(warning, file=sys.stderr)
            source, namespace = with_default_siteinfo(dump, tmp / ".with-siteinfo.xml"), "Template"
        templates = write_template_file(tmp / ".templates.xml", namespace)
        cmd = [sys.executable, "-m", "wikiextractor.WikiExtractor", str(source), "-o", str(out), "--json",
               "--processes", str(max(1, processes)), "--html-safe", "", "--templates", str(templates)]
        if log is not None:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write((warning + "\n" if warning else "") + " ".join(cmd) + "\n")
        ran = run_watched(cmd, log, limits.deadline_s(dump.stat().st_size), limits, watch_dir=tmp, keep=_notable,
                          died=lambda line: line.startswith("Traceback"))
        for helper in (templates, tmp / ".with-siteinfo.xml"):
            helper.unlink(missing_ok=True)
        if ran.stopped == "disk full":
            raise WikiGPTError(f"{outdir}: no space left on device (WikiExtractor on {dump}); free space and "
                               f"rerun (finished outputs are kept)")
        problem = _problem(ran.kept)
        if ran.stopped:
            cause = f": {problem.strip()}" if problem else ""
            raise WikiGPTError(f"{dump}: WikiExtractor stopped: {ran.stopped} (config limits.extract_*){cause}")
        found = [m for line in ran.kept for m in _EXIT_RE.findall(line)]
        if ran.returncode != 0 or problem:
            last = problem or (list(ran.tail) or ["no message"])[-1]
            raise WikiGPTError(f"{dump}: WikiExtractor failed (exit {ran.returncode}): {last.strip()}")
        if not found or found[-1][0] != "clean":
            raise WikiGPTError(f"{dump}: WikiExtractor did not finish cleanly (pages lost in its reducer)")
        reported = int(found[-1][1] or 0)
        written, nonempty = _count_lines(out) if out.exists() else (0, 0)
        if written != reported:
            raise WikiGPTError(f"{dump}: WikiExtractor reported {reported} articles but wrote {written}")
        if nonempty == 0:
            raise WikiGPTError(f"{dump}: dump yielded zero articles ({pages} pages)")
        for f in out.iterdir():
            f.rename(tmp / f.name)
        out.rmdir()
    return {"pages": pages, "articles": written, "nonempty": nonempty} | ({"warning": warning} if warning else {})
