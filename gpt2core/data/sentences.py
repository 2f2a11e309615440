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

import blingfire

_PARA = "\u2029"
_CLOSERS = "”’」』）》】〉"
_CLOSER_MOVED = re.compile(rf"\n([{_CLOSERS}]+)")
_CJK_END = re.compile(rf"([。！？]+[{_CLOSERS}]*)(?=[^\s{_CLOSERS}。！？])")
_BLANK_LINES = re.compile(r"\n{2,}")
PIECE_CHARS = 1 << 20


def _lines(text: str) -> str:
    return "\n".join(s for s in (p.strip() for line in text.split("\n") for p in line.split(_PARA)) if s)


def _pieces(text: str, size: int) -> list[str]:
    """`text` cut after newlines into pieces of about `size` characters (a line longer than that stays whole).
    blingfire needs ~23 bytes of memory per character of its input, so a 50 MB page in one call took 1.2 GB;
    a newline always ends a sentence, so splitting piece by piece gives the same lines."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        if cut < 0:
            break
        pieces.append(text[start:cut + 1])
        start = cut + 1
    pieces.append(text[start:])
    return pieces


def _split_piece(text: str) -> str:
    out = blingfire.text_to_sentences(text.replace("\n", _PARA + " "))
    if not out and text.strip():  # blingfire signals an internal error with ''
        out = text
    return _lines(out)


def split_sentences(text: str, piece_chars: int = PIECE_CHARS) -> str:
    """A document -> one sentence a line; empty paragraphs and edge spaces dropped."""
    out = "\n".join(lines for lines in map(_split_piece, _pieces(text, piece_chars)) if lines)
    if not out.isascii():
        out = _CLOSER_MOVED.sub(r"\1\n", out)
        out = _CJK_END.sub("\\1\n", out)
        out = _BLANK_LINES.sub("\n", out).strip("\n")  # a closer that had a line to itself left it empty
    return out
