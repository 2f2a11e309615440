"""Chinese text: sentence splitting by punctuation, and OpenCC Traditional-to-Simplified conversion.

Chinese needs no statistical splitter: a sentence ends at `。！？；…` (a run of them, e.g. `？！` or `……`),
and a closing quote or bracket right after them belongs to the sentence they end. blingfire, made for
space-separated scripts, sometimes inserts spaces or moves the quote to the next line, so Chinese corpora
use this splitter instead: one regex substitution a document, no characters added or removed except the
newline between sentences and the spaces at the edges of lines (full-width punctuation is kept as it is).
"""

from __future__ import annotations

import re
from functools import lru_cache

from gpt2core.errors import WikiGPTError

ENDERS = "。！？；…"
CLOSERS = "”’」』）》】〉"
# An end-punctuation run plus closers, followed by something that is not a line end.
_END = re.compile(rf"([{ENDERS}]+[{re.escape(CLOSERS)}]*)[ \t\u3000]*(?=[^\s{ENDERS}{re.escape(CLOSERS)}])")
_BLANK_LINES = re.compile(r"[ \t\u3000]*\n[\s\u3000]*")


def split_sentences_zh(text: str) -> str:
    """A Chinese document -> one sentence a line; paragraphs become lines, empty lines and edge spaces go."""
    out = _END.sub("\\1\n", text)
    return _BLANK_LINES.sub("\n", out).strip(" \t\n\r\u3000")


def is_chinese(lang: str) -> bool:
    """Corpus languages that take the Chinese splitter: zh, zh-hans, zh-TW, zh_yue, ..."""
    return lang.lower().split("-")[0].split("_")[0] in ("zh", "yue", "lzh", "wuu", "gan")


@lru_cache(maxsize=1)
def _t2s():
    try:
        import opencc
    except ImportError:
        raise WikiGPTError("t2s: needs the OpenCC Python package (pip install opencc)") from None
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> Simplified characters with OpenCC's `t2s` tables (characters and phrases only)."""
    return _t2s().convert(text)
