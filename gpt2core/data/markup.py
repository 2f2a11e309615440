"""Count the markup left in text that reaches the tokenizer, so a user sees the quality of their corpus.

Presplit counts these in every document it keeps (after cleaning) and stores them per shard; the manifest
sums them per corpus (`corpora[].markup`). Some hits can be real text: `()` after a function name in a
programming article, `[[` in a math article; everything else here is a leftover of wikitext or HTML.
"""

from __future__ import annotations

import re
from collections import Counter

MARKUP_KEYS = ("entities", "template_open", "template_close", "link_open", "link_close", "variant_open",
               "variant_close", "table_rows", "refs", "empty_brackets")
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_TABLE_ROW = re.compile(r"^(?:\{\||\|-|\|\})", re.M)
_EMPTY = re.compile(r"\([ \t\u3000]*\)")
_EMPTY_FULLWIDTH = re.compile(r"（[ \t\u3000]*）")
_LITERALS = (("template_open", "{{"), ("template_close", "}}"), ("link_open", "[["), ("link_close", "]]"),
             ("variant_open", "-{"), ("variant_close", "}-"), ("refs", "<ref"))


def count_markup(text: str, counts: Counter[str]) -> None:
    """Add the leftovers found in `text` to `counts` (literal counts first: they cost almost nothing)."""
    for key, literal in _LITERALS:
        if literal in text:
            counts[key] += text.count(literal)
    if "&" in text:
        counts["entities"] += len(_ENTITY.findall(text))
    if "|" in text:
        counts["table_rows"] += len(_TABLE_ROW.findall(text))
    if "(" in text:
        counts["empty_brackets"] += len(_EMPTY.findall(text))
    if "（" in text:
        counts["empty_brackets"] += len(_EMPTY_FULLWIDTH.findall(text))


def markup_summary(counts: Counter[str] | dict) -> dict[str, int]:
    """Every key, zeros included, in a fixed order: a zero is a result worth showing."""
    return {k: int(counts.get(k, 0)) for k in MARKUP_KEYS}
