"""Clean what WikiExtractor leaves of wikitext, before presplit splits sentences (Wikipedia corpora only).

- Language-variant markup `-{ ... }-` (zhwiki, srwiki, ...) is resolved to one variant: `zh-hans`, else
  `zh-cn`, else the first one given; plain `-{text}-` becomes `text`; a rule that displays nothing (flags H,
  T, `-`) and an empty variant (`-{zh-hant:; zh-hans:;}-`) become nothing.
- Templates WikiExtractor left unexpanded (`{{eqm}}` in a line it skipped) are removed, or replaced by their
  text when they are argument-free entries of gpt2core.data.templates' table; innermost first, so nested
  ones go too.
- Brackets emptied by a removed template (`Alabama () is`, `（）`) are removed with the space before them; a
  `()` glued to a word (`main()`) is kept, it is real text.
- `<onlyinclude>`-style tags that survived as text are removed.
Each kind of removal is counted (`cleaned` in the shard metadata).
"""

from __future__ import annotations

import re
from collections import Counter

from gpt2core.data.templates import INLINE_TEMPLATES

_VARIANT = re.compile(r"-\{([^\n]{0,4000}?)\}-")
_FLAGS = re.compile(r"\s*([ATRDHN\-;\s]{1,12})\|")
_CODE = re.compile(r"\s*([a-z]{2,3}(?:-[a-z0-9]{2,8}){0,2})\s*:")
_HIDDEN_FLAGS = {"H", "T", "-"}
_PREFERRED = ("zh-hans", "zh-cn", "zh-sg", "zh-my", "zh")
_TEMPLATE = re.compile(r"\{\{([^{}]{0,2000})\}\}")
_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_EMPTY_BRACKETS = re.compile(r"\([ \t,;:]*\)|（[ \t\u3000，；、：]*）")  # a literal first: re scans fast
_INCLUDE_TAGS = re.compile(r"</?\s*(?:onlyinclude|includeonly|noinclude)\s*/?\s*>[ \t]*\n?", re.I)
_ZERO_ARG = {name: body for name, body in INLINE_TEMPLATES.items() if "{{{" not in body and "{{" not in body}


def _variants(body: str) -> dict[str, str] | None:
    """`zh-hans:A;zh-hant:B` -> {code: text}, or None when `body` is not a list of variants."""
    out: dict[str, str] = {}
    for item in body.split(";"):
        if not item.strip():
            continue
        item = item.split("=>", 1)[-1]  # one-way rule `zh-tw=>zh-cn:X`: the text after the arrow
        m = _CODE.match(item)
        if m is None:
            return None
        out.setdefault(m.group(1), item[m.end():].strip())
    return out or None


def resolve_variant(body: str) -> str:
    """The text one `-{body}-` shows in Simplified Chinese."""
    m = _FLAGS.match(body)
    if m and not _CODE.match(body):
        flags = set(m.group(1).replace(";", " ").split()) or {m.group(1).strip()}
        if flags & _HIDDEN_FLAGS:
            return ""
        body = body[m.end():]
        if "R" in flags:
            return body
    variants = _variants(body)
    if variants is None:
        return body
    for code in _PREFERRED:
        if code in variants:
            return variants[code]
    return next(iter(variants.values()))


def _template(match: re.Match, removed: Counter[str]) -> str:
    name = match.group(1).strip()
    if name in _ZERO_ARG or name[:1].upper() + name[1:] in _ZERO_ARG:
        removed["templates_expanded"] += 1
        return _ZERO_ARG.get(name) or _ZERO_ARG[name[:1].upper() + name[1:]]
    removed["templates"] += 1
    return ""


def _drop_empty_brackets(text: str, removed: Counter[str]) -> str:
    """Brackets with nothing in them, and the spaces before them; `main()` (glued to a word) stays."""
    out, last = [], 0
    for m in _EMPTY_BRACKETS.finditer(text):
        start = m.start()
        while start > last and text[start - 1] in " \t":
            start -= 1
        if m.group(0)[0] == "(" and start == m.start() and start > 0 and (text[start - 1].isalnum()
                                                                          or text[start - 1] == "_"):
            continue  # a call, not an emptied bracket
        out.append(text[last:start])
        last = m.end()
        removed["empty_brackets"] += 1
    return "".join(out) + text[last:] if out else text


def clean_wikitext(text: str, removed: Counter[str]) -> str:
    """`text` with the leftovers above resolved or removed; what was removed is added to `removed`."""
    if "-{" in text:
        def variant(m: re.Match) -> str:
            removed["variants"] += 1
            return resolve_variant(m.group(1))
        text = _VARIANT.sub(variant, text)
    if "{{" in text:
        for _ in range(8):  # innermost templates first; 8 levels is deeper than any real leftover
            text, n = _TEMPLATE.subn(lambda m: _template(m, removed), text)
            if n == 0 or "{{" not in text:
                break
        text = _SPACES.sub(" ", text)  # WikiExtractor collapsed spaces; a removed template left two
    if "<" in text:
        text, n = _INCLUDE_TAGS.subn("", text)
        removed["tags"] += n
    if "(" in text or "（" in text:
        text = _drop_empty_brackets(text, removed)
    return text
