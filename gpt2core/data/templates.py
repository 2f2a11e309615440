"""The inline templates WikiExtractor expands: a fixed table, not the dump's own template pages.

WikiExtractor drops a template it has no definition for, and in a Wikipedia dump the templates that carry
article text (`{{lang|fr|Vaillant}}`, `{{convert|5|km}}`, `{{nihongo|Tokyo|東京}}`) are Lua modules it cannot
run, so `（{{lang|fr|Vaillant}}）` became `（）`. The extract stage hands WikiExtractor this table instead
(`--templates`): each entry keeps the text argument of one such template, every other template (citations,
infoboxes, navboxes, hatnotes) expands to nothing. Two more gains: a part's text no longer depends on which
dump part holds a template page, and WikiExtractor skips its first full pass over the part (collecting
template pages), which was about a third of its time.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

# Language codes of the `{{lang-xx|text}}` family (ISO 639-1, plus the 639-2/3 codes common in enwiki).
LANG_CODES = (
    "aa ab af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz "
    "ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik "
    "io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml "
    "mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd "
    "se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi "
    "vo wa wo xh yi yo za zh zu "
    "ang arc akk egy enm fro frm gmh goh got grc haw hbo ltg non ota peo pra sux syc yue wuu nan hak lzh "
    "sh sco gsw nds pdc fil tpi"
).split()

_FIRST = "{{{1|}}}"
_SECOND = "{{{2|}}}"

# name (as MediaWiki normalizes it: first letter upper case) -> wikitext body
INLINE_TEMPLATES: dict[str, str] = {
    "Lang": _SECOND,                       # {{lang|fr|Vaillant}} -> Vaillant
    "Script": _SECOND,                     # {{script|Arab|...}}
    "Transl": "{{{3|{{{2|}}}}}}",          # {{transl|ja|Tōkyō}}, {{transl|ar|DIN|...}}
    "Nihongo": _FIRST,                     # {{nihongo|Tokyo|東京|Tōkyō}} -> Tokyo
    "Le": _FIRST,                          # zhwiki: {{le|中文名|English title}}
    "Link-en": _FIRST,
    "Ill": _FIRST,                         # enwiki interlanguage link
    "Tsl": "{{{3|{{{2|}}}}}}",             # {{tsl|en|English title|中文名}}
    "Nowrap": _FIRST,
    "Small": _FIRST,
    "Smaller": _FIRST,
    "Big": _FIRST,
    "Abbr": _FIRST,
    "Math": _FIRST,
    "Mvar": _FIRST,
    "Val": _FIRST,
    "Not a typo": _FIRST,
    "Quote": "{{{1|{{{text|{{{quote|}}}}}}}}}",
    "Convert": "{{{1|}}} {{{2|}}}",        # {{convert|5|km|mi}} -> 5 km (no conversion)
    "Cvt": "{{{1|}}} {{{2|}}}",
    "Circa": "c. {{{1|}}}",
    "As of": "As of {{{1|}}}",
    "Frac": "{{#if:{{{3|}}}|{{{1}}} {{{2}}}/{{{3}}}|{{#if:{{{2|}}}|{{{1}}}/{{{2}}}|1/{{{1|}}}}}}}",
    "Chem": "".join(f"{{{{{{{i}|}}}}}}" for i in range(1, 11)),  # {{chem|H|2|O}} -> H2O
    "Angbr": "⟨{{{1|}}}⟩",
    "Eqm": "⇌",
    "·": " · ",
    "Snd": " – ",
    "Spaced ndash": " – ",
    "Ndash": "–",
    "Mdash": "—",
    "Nbsp": " ",
} | {f"Lang-{code}": _FIRST for code in LANG_CODES}


def write_template_file(path: str | Path, prefix: str = "Template") -> Path:
    """The table as WikiExtractor's `--templates` file (pages titled `<prefix>:<name>`); `prefix` is the
    dump's own name for namespace 10 (`Template` in enwiki and zhwiki, `Vorlage` in dewiki)."""
    path = Path(path)
    pages = "".join(f"<page>\n   <title>{escape(prefix)}:{escape(name)}</title>\n   <ns>10</ns>\n"
                    f"   <text>{escape(body)}</text>\n</page>\n" for name, body in INLINE_TEMPLATES.items())
    path.write_text(pages, encoding="utf-8")
    return path


def table_version() -> str:
    """A short hash of the table: the extract rule's params carry it, so editing the table reruns extract."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(INLINE_TEMPLATES, sort_keys=True).encode()).hexdigest()[:12]
