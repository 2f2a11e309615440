"""Sentence presplitting (the reference used NLTK Punkt, which needs a data download and is slow).

blingfire needs no download and runs ~20 MB/s per core. It treats a newline as ordinary space, so each
paragraph is split on its own and the sentences are rejoined with `\\n` (the reference's layout). Two
repairs for Chinese/Japanese text: a closing quote or bracket that blingfire pushes to the next sentence
goes back to the one it closes, and a `。！？` run that blingfire left inside a line becomes a break.
"""

from __future__ import annotations

import re

import blingfire

_CLOSERS = "”’」』）》】〉"
_CLOSER_MOVED = re.compile(rf"\n([{_CLOSERS}]+)")
_CJK_END = re.compile(rf"([。！？]+[{_CLOSERS}]*)(?=[^\s{_CLOSERS}。！？])")


def split_paragraph(paragraph: str) -> str:
    """One paragraph -> its sentences joined by newlines (leading/trailing space dropped)."""
    text = blingfire.text_to_sentences(paragraph)
    if not text.isascii():
        text = _CLOSER_MOVED.sub(r"\1\n", text)
        text = _CJK_END.sub("\\1\n", text)
    return text


def split_sentences(text: str) -> str:
    """A document -> one sentence a line; empty paragraphs are dropped."""
    out = [split_paragraph(p) for p in text.split("\n") if p.strip()]
    return "\n".join(s for s in out if s)
