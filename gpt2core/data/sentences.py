"""Sentence presplitting (the reference used NLTK Punkt, which needs a data download and is slow).

blingfire needs no download and runs ~20 MB/s per core, but only when called on whole documents (a call
per paragraph halves the rate) and it treats a newline as ordinary space. So each document goes through
blingfire whole (a long one in ~1 MB pieces cut after newlines, which bounds memory) with its newlines turned
into U+2029 PARAGRAPH SEPARATOR (which blingfire always ends a sentence at), and the output is cut into one
sentence a line, paragraphs kept apart (the reference's layout). Two repairs for Chinese/Japanese text: a
closing quote or bracket that blingfire pushes to the next sentence goes back to the one it closes, and a
`。！？` run left inside a line becomes a break.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator

import blingfire

_PARA = "\u2029"
_CLOSERS = "”’」』）》】〉"
_CLOSER_MOVED = re.compile(rf"\n([{_CLOSERS}]+)")
_CJK_END = re.compile(rf"([。！？]+[{_CLOSERS}]*)(?=[^\s{_CLOSERS}。！？])")
_BLANK_LINES = re.compile(r"\n{2,}")
PIECE_CHARS = 1 << 20
MAX_PARAGRAPH_CHARS = 1 << 20  # config limits.max_paragraph_chars


def _lines(text: str) -> str:
    return "\n".join(s for s in (p.strip() for line in text.split("\n") for p in line.split(_PARA)) if s)


_SENTENCE_ENDS = (". ", "! ", "? ", "。", "！", "？")


def _cut_point(text: str, start: int, max_chars: int) -> int:
    """Where to end the first `max_chars` or fewer characters of a paragraph starting at `start`: after its
    last sentence end (". ", "。", ...) in the second half of them, else after its last space there, else
    right at `max_chars` (a paragraph of one endless word)."""
    lo, end = start + max_chars // 2, start + max_chars
    for seps in (_SENTENCE_ENDS, (" ",)):
        hits = [text.rfind(sep, lo, end) + len(sep) for sep in seps if text.rfind(sep, lo, end) >= 0]
        if hits:
            return max(hits)
    return end


def _pieces(text: str, size: int, max_chars: int | None = None, cuts: Counter | None = None) -> Iterator[str]:
    """`text` cut after newlines into pieces of about `size` characters. blingfire needs ~23 bytes of memory
    per character of its input, so a 50 MB page in one call took 1.2 GB; a newline always ends a sentence,
    so splitting piece by piece gives the same lines. A paragraph (line) longer than `max_chars` is cut too
    (its own piece, at a sentence end or space where there is one; counted in cuts["paragraph_cuts"]), so
    no piece passes size + max_chars whatever the text's shape: one 200 MB paragraph took presplit to 5.4 GB."""
    max_chars = max_chars or len(text) + 1
    size = min(size, max_chars)  # then every line before the probe point is within max_chars: only its own
    start = 0
    while len(text) - start > size:
        probe = start + size
        line_start = max(start, text.rfind("\n", start, probe) + 1)
        limit = line_start + max_chars
        end = text.find("\n", probe, limit)
        if end >= 0:
            yield text[start:end + 1]
            start = end + 1
            continue
        if len(text) <= limit:  # the last line ends (with the text) within max_chars
            break
        if line_start > start:
            yield text[start:line_start]
        start = _cut_point(text, line_start, max_chars)
        yield text[line_start:start]
        if cuts is not None:
            cuts["paragraph_cuts"] += 1
    yield text[start:]


def _split_piece(text: str) -> str:
    out = blingfire.text_to_sentences(text.replace("\n", _PARA + " "))
    if not out and text.strip():  # blingfire signals an internal error with ''
        out = text
    return _lines(out)


def split_pieces(text: str, splitter: Callable[[str], str], piece_chars: int = PIECE_CHARS,
                 max_paragraph_chars: int | None = None, cuts: Counter | None = None) -> str:
    """`splitter` applied piece by piece (_pieces), the non-empty results one a line: memory bounded by the
    piece size, not by the document's or a paragraph's length."""
    return "\n".join(lines for lines in map(splitter, _pieces(text, piece_chars, max_paragraph_chars, cuts))
                     if lines)


def split_sentences(text: str, piece_chars: int = PIECE_CHARS, max_paragraph_chars: int | None = None,
                    cuts: Counter | None = None) -> str:
    """A document -> one sentence a line; empty paragraphs and edge spaces dropped. A paragraph longer than
    `max_paragraph_chars` (None: no limit) is cut first (see _pieces)."""
    out = split_pieces(text, _split_piece, piece_chars, max_paragraph_chars, cuts)
    if not out.isascii():
        out = _CLOSER_MOVED.sub(r"\1\n", out)
        out = _CJK_END.sub("\\1\n", out)
        out = _BLANK_LINES.sub("\n", out).strip("\n")  # a closer that had a line to itself left it empty
    return out
