"""Differential tests: decodekit's regex masks against llguidance's and outlines-core's on the Llama 3
vocabulary (the anchors are driven through `bench/reference/grammar_anchors.py`).

llguidance implements the plain regular language, as decodekit does, and must agree on every mask.
outlines-core must never allow a token decodekit forbids; it is known to forbid some tokens the language
allows (see `docs/grammar.md`, "Differences from the anchors"), so equality is only required for the
regexes those differences cannot touch.
"""

from __future__ import annotations

from functools import cache

import decodekit as dk
import pytest
import test_grammar_regex as corpus
import vocabularies

pytest.importorskip("llguidance")
pytest.importorskip("outlines_core")

from bench.reference import grammar_anchors as anchors

# Regexes with Unicode classes, which the brute-force reference cannot decide exactly.
UNICODE_CASES: dict[str, tuple[str, list[str]]] = {
    "unicode_date": (r"\d{4}-\d{2}-\d{2}", ["\u0662\u0660\u0662\u0666-11-28", "2026-11-28"]),
    "words": (r"\w+( \w+)*", ["na\u00efve caf\u00e9 \u65e5\u672c\u8a9e", "plain words"]),
    "line": (r"[^\n]{1,40}\n", ["any text, \u00e9 \u2014 up to a newline\n"]),
}
# outlines-core drops tokens whose last byte follows a point where the text already matched (a regex
# that can match before its end) and follows leftmost-first alternation; these regexes have neither.
OUTLINES_EQUAL = {"date", "uuid", "quoted", "keywords", "timestamp", "unicode_date"}


@cache
def llama3() -> tuple[dk.Vocabulary, anchors.AnchorVocab]:
    special = vocabularies.llama3_special_tokens()
    path = vocabularies.package_file("llama_models", "llama3", "tokenizer.model")
    ours = dk.Vocabulary.from_tiktoken(path, special, eos_tokens=["<|end_of_text|>"])
    theirs = anchors.AnchorVocab.from_tiktoken(str(path), list(special), "<|end_of_text|>")
    return ours, theirs


def masks(
    matcher: dk.Matcher, anchor: anchors.LlguidanceRegex | anchors.OutlinesRegex
) -> tuple[set[int], set[int]]:
    vocab = llama3()[0]
    ours = dk.allocate_token_bitmask(1, vocab.size)
    matcher.fill_next_token_bitmask(ours)
    theirs = anchor.vocab.new_bitmask()
    anchor.fill_bitmask(theirs)
    return (
        set(dk.bitmask_to_ids(ours[0], vocab.size).tolist()),
        set(dk.bitmask_to_ids(theirs, vocab.size).tolist()),
    )


@pytest.mark.parametrize("case", sorted(corpus.CORPUS) + sorted(UNICODE_CASES))
def test_masks_equal_llguidance_and_contain_outlines(case: str) -> None:
    pattern, examples = {**corpus.CORPUS, **UNICODE_CASES}[case]
    ours_vocab, anchor_vocab = llama3()
    compiled = dk.Grammar.regex(pattern).compile(ours_vocab)
    for example in examples:
        tokens = anchor_vocab.greedy_tokenize(example.encode())
        matcher = dk.Matcher(compiled)
        llg = anchors.LlguidanceRegex(anchor_vocab, pattern)
        outlines: anchors.OutlinesRegex | None = anchors.OutlinesRegex(anchor_vocab, pattern)
        for step, token in enumerate([*tokens, anchor_vocab.eos_id]):
            ours, theirs = masks(matcher, llg)
            assert ours == theirs, (
                f"{case} step {step}: only ours {sorted(ours - theirs)[:5]}, only llguidance "
                f"{sorted(theirs - ours)[:5]}"
            )
            if outlines is not None:
                _, outlines_mask = masks(matcher, outlines)
                extra = sorted(outlines_mask - ours)[:5]
                assert not extra, f"{case} step {step}: outlines allows {extra}"
                if case in OUTLINES_EQUAL:
                    missing = sorted(ours - outlines_mask)[:5]
                    assert not missing, f"{case} step {step}: outlines forbids {missing}"
                if not outlines.consume(token):
                    # The documented outlines-core difference: it cannot follow this path any further.
                    assert case not in OUTLINES_EQUAL
                    outlines = None
            assert matcher.accept_token(token)
            assert llg.consume(token)
        assert matcher.is_terminated()


def test_outlines_difference_is_the_documented_one() -> None:
    """After ``1`` the text ``1`` already matches the number regex; outlines-core forbids the token ``.``
    there (it ends one byte after a match point), though ``1.5`` is in the language."""
    ours_vocab, anchor_vocab = llama3()
    pattern = corpus.CORPUS["integer"][0] + r"(\.[0-9]+)?"
    matcher = dk.Matcher(dk.Grammar.regex(pattern).compile(ours_vocab))
    outlines = anchors.OutlinesRegex(anchor_vocab, pattern)
    one, dot = anchor_vocab.greedy_tokenize(b"1") + anchor_vocab.greedy_tokenize(b".")
    assert matcher.accept_token(one)
    assert outlines.consume(one)
    ours, theirs = masks(matcher, outlines)
    assert dot in ours
    assert dot not in theirs
