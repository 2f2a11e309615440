"""The reference's WikiText detokenizer (Megatron-LM `tasks/zeroshot_gpt2/detokenizer.py`), rule for rule.

Why exactly these rules, in this order, including the one that changes nothing: the published WikiText-103
numbers (GPT-2's 37.50, Megatron-LM's) were computed on text detokenized this way, and the BPE count, the
windows and therefore the perplexity all depend on it. Improving a rule would make our number incomparable.
"""

from __future__ import annotations

import re

# (kind, pattern, replacement) in the reference's order; kind "str" is str.replace, "re" is re.sub.
WIKITEXT_RULES: tuple[tuple[str, str, str], ...] = (
    # contractions
    ("str", "s '", "s'"),
    ("re", r"/' [0-9]/", r"/'[0-9]/"),  # matches only a literal "/' 7/": no effect on WikiText; kept
    # number separators
    ("str", " @-@ ", "-"),
    ("str", " @,@ ", ","),
    ("str", " @.@ ", "."),
    # punctuation
    ("str", " : ", ": "),
    ("str", " ; ", "; "),
    ("str", " . ", ". "),
    ("str", " ! ", "! "),
    ("str", " ? ", "? "),
    ("str", " , ", ", "),
    # brackets and quotes: drop the spaces just inside each pair (non-greedy; \s also spans newlines)
    ("re", r"\(\s*([^\)]*?)\s*\)", r"(\1)"),
    ("re", r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    ("re", r"{\s*([^}]*?)\s*}", r"{\1}"),
    ("re", r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    ("re", r"'\s*([^']*?)\s*'", r"'\1'"),
    # miscellaneous
    ("str", "= = = =", "===="),
    ("str", "= = =", "==="),
    ("str", "= =", "=="),
    ("str", " " + chr(176) + " ", chr(176)),
    ("str", " \n", "\n"),
    ("str", "\n ", "\n"),
    ("str", " N ", " 1 "),
    ("str", " 's", "'s"),
)

_COMPILED = tuple(
    (kind, re.compile(pattern) if kind == "re" else pattern, repl) for kind, pattern, repl in WIKITEXT_RULES
)


def apply_rule(text: str, index: int) -> str:
    """Apply rule number `index` of WIKITEXT_RULES (tests check each rule on its own)."""
    kind, pattern, repl = _COMPILED[index]
    if kind == "re":
        return pattern.sub(repl, text)  # type: ignore[union-attr]
    return text.replace(pattern, repl)  # type: ignore[arg-type]


def wikitext_detokenize(text: str) -> str:
    """All rules in the reference's order."""
    for index in range(len(_COMPILED)):
        text = apply_rule(text, index)
    return text


def count_original_words(text: str) -> int:
    """N_orig as the reference counts it: `len(text.strip().split(" "))` (newlines stay inside words)."""
    return len(text.strip().split(" "))
