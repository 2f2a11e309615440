"""The reference's WikiText detokenizer, rule by rule, and N_orig / N_bpe on the real test file."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_file
from test_eval_support import gpt2_tokenizer_json

from gpt2core.eval.detok import WIKITEXT_RULES, apply_rule, count_original_words, wikitext_detokenize
from gpt2core.eval.runtime import read_text
from gpt2core.eval.wikitext import prepare_tokens

# (rule index, input, expected output): each rule on its own.
CASES = [
    (0, "the players ' union", "the players' union"),
    (1, "in the 1990s ' 5 hits", "in the 1990s ' 5 hits"),  # the rule that has no effect on WikiText
    (1, "a /' 7/ b", "a /'[0-9]/ b"),  # ...because it only matches a literal slash-quote-space-digit-slash
    (2, "a well @-@ known case", "a well-known case"),
    (3, "1 @,@ 000 people", "1,000 people"),
    (4, "3 @.@ 5 metres", "3.5 metres"),
    (5, "as follows : one", "as follows: one"),
    (6, "first ; second", "first; second"),
    (7, "It ended . Then", "It ended. Then"),
    (8, "Stop ! Now", "Stop! Now"),
    (9, "Why ? Because", "Why? Because"),
    (10, "red , green", "red, green"),
    (11, "a ( small ) b", "a (small) b"),
    (12, "a [ 1 ] b", "a [1] b"),
    (13, "a { x } b", "a {x} b"),
    (14, 'he said " yes " and " no "', 'he said "yes" and "no"'),
    (15, "the ' Tiger ' tank", "the 'Tiger' tank"),
    (16, " = = = = Deep = = = = ", " ==== Deep ==== "),
    (17, " = = = Sub = = = ", " === Sub === "),
    (18, " = = Section = = ", " == Section == "),
    (19, "at 20 ° C", "at 20°C"),
    (20, "end . \nnext", "end .\nnext"),
    (21, "end\n next", "end\nnext"),
    (22, "a N b", "a 1 b"),
    (23, "Kirby 's game", "Kirby's game"),
]


def test_every_rule_has_a_case() -> None:
    assert {i for i, *_ in CASES} == set(range(len(WIKITEXT_RULES)))


@pytest.mark.parametrize(("index", "text", "expected"), CASES)
def test_rule(index: int, text: str, expected: str) -> None:
    assert apply_rule(text, index) == expected


def test_rules_apply_in_reference_order() -> None:
    # " @-@ " must go before the punctuation rules, brackets after " , ", headings after punctuation.
    raw = " = = Early life = = \n He was born in 1 @,@ 234 ( Paris , France ) ; it 's 20 ° C . \n"
    assert wikitext_detokenize(raw) == " == Early life ==\nHe was born in 1,234 (Paris, France); it's 20°C.\n"
    # the parenthesis regex is non-greedy and crosses lines, as the reference's does
    assert wikitext_detokenize("( a ) b ( c\n )") == "(a) b (c)"


def test_original_word_count_splits_on_spaces_only() -> None:
    # strip, then split on single spaces: newlines stay tokens of their own here
    assert count_original_words(" = A = \n \n B c . \n") == 8  # =, A, =, \n, \n, B, c, .
    assert count_original_words("one") == 1


def test_counts_on_the_real_wikitext103_test_file(tmp_path: Path) -> None:
    text = read_text(shared_file("wikitext/wiki.test.tokens"))
    tok = gpt2_tokenizer_json(shared_file("gpt2_bpe/encoder.json"), shared_file("gpt2_bpe/vocab.bpe"),
                              tmp_path / "tokenizer.json")
    n_orig, ids = prepare_tokens(text, tok)
    assert n_orig == 245_566
    assert abs(ids.numel() - 270_330) <= 0.01 * 270_330
    assert ids.numel() == 270_330  # exactly the reference's count with this detokenizer and OpenAI's BPE
