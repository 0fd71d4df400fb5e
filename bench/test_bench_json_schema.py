"""Benchmarks of JSON-Schema-constrained decoding on the Llama 3 vocabulary (128,256 ids) against llguidance
and xgrammar, both driven through :mod:`bench.reference.json_anchors`, on five schemas of the corpus in
:mod:`bench.reference.json_schemas` (a flat object, string formats, nested arrays of objects, a recursive
``$ref``, the long OpenAPI-like document). ``bench/json_schema_masks.py`` runs the whole corpus and prints
the issue's table; these are the same measurements in pytest-benchmark form, cheap enough for
``pytest bench --benchmark-disable`` (every benchmark runs once and checks what it computes).

Every engine gets the same schema text and the same semantics: decodekit
``Grammar.json_schema(text, whitespace="compact", strict=True)``; llguidance and xgrammar configured to
match (no whitespace, ``,`` and ``:``, properties in schema order; see the ``json_anchors`` docstring).
decodekit's column is skipped while ``Grammar.json_schema`` does not exist; a missing anchor, or the
``llama-models`` package that supplies the vocabulary, is skipped with its reason. The vocabulary objects
(decodekit ``Vocabulary``, llguidance ``LLTokenizer``, xgrammar ``TokenizerInfo`` and its uncached
``GrammarCompiler``) are built once per session, before any timing.

Groups:

* ``json schema first mask: <schema>``: time to first mask, from the schema text to a filled mask row:
  compile, a new matcher and one fill (``decodekit``: ``Grammar.json_schema(...).compile(vocab)``,
  ``Matcher``, ``fill_next_token_bitmask``; ``llguidance``: an ``LLMatcher`` on the lark text of
  ``llguidance_json_grammar(schema)`` (made beforehand) and ``llguidance.numpy.fill_next_token_bitmask``;
  ``xgrammar``: ``XgrammarJson``, i.e. ``compile_json_schema`` with the compiler's cache off, a
  ``GrammarMatcher`` and its fill).
* ``json schema mask walk: <schema>``: walks every instance of the schema (greedy longest-match tokens,
  the same for every engine), filling one ``[1, words]`` int32 row at every position, the final EOS
  position included, then consuming the token. Each round starts from a fresh compile made by the
  pedantic ``setup`` (untimed), so each engine's first-visit work is in every round, as for a new request.
  ``extra_info`` keeps ``mask_median_us``, ``mask_p99_us``, ``mask_max_us`` over the ``masks`` fills of
  the measured rounds (each fill timed on its own): the per-token number to compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import decodekit as dk
import numpy as np
import pytest

from .reference.grammar_anchors import AnchorVocab, LlguidanceGrammar
from .reference.json_anchors import (
    LlguidanceJson,
    XgrammarJson,
    llguidance_json_grammar,
    mask_allows,
    xgrammar_compiler,
)
from .reference.json_schemas import SCHEMAS, check_corpus
from .test_bench_grammar import WalkRound, anchor_vocab, dk_vocab, llguidance_vocab, run_walks

Tag = Callable[[str, str], None]

DECODEKIT_SKIP_REASON = "decodekit.Grammar.json_schema does not exist yet (issue 8)"
XGRAMMAR_SKIP_REASON = "xgrammar is not installed; install the bench extra to run the xgrammar benchmarks"

NAMES = ("flat_object", "formats", "array_of_objects", "linked_list", "openapi_like")
ROUNDS_FIRST_MASK = 10
ROUNDS_WALK = 20
WARMUP = 1


# --- shared inputs (built once per session) ---------------------------------------------------------------


def _need_decodekit() -> dk.Vocabulary:
    if not hasattr(dk.Grammar, "json_schema"):
        pytest.skip(DECODEKIT_SKIP_REASON)
    return dk_vocab()


def _xgrammar_vocab() -> AnchorVocab:
    pytest.importorskip("xgrammar", reason=XGRAMMAR_SKIP_REASON)
    vocab = anchor_vocab()
    xgrammar_compiler(vocab)
    return vocab


def _decodekit_compile(name: str) -> Any:
    grammar = dk.Grammar.json_schema(SCHEMAS[name].schema_text, whitespace="compact", strict=True)
    return grammar.compile(dk_vocab())


@cache
def json_walks(name: str) -> tuple[tuple[int, ...], ...]:
    """The token sequences of ``name``'s instances (greedy longest match over the Llama 3 tokens)."""
    vocab = anchor_vocab()
    return tuple(tuple(vocab.greedy_tokenize(text.encode())) for text in SCHEMAS[name].instance_texts)


def test_json_schema_corpus_is_valid() -> None:
    """Every instance of the corpus validates against its schema (jsonschema) with keys in schema order."""
    pytest.importorskip("jsonschema", reason="jsonschema checks the corpus; pip install jsonschema")
    assert len(SCHEMAS) >= 20
    check_corpus()


# --- time to first mask -----------------------------------------------------------------------------------


def bench_first_mask(benchmark: Any, first_mask: Callable[[], np.ndarray], eos_id: int, name: str) -> None:
    """Time ``first_mask`` (schema text to filled row); the row must allow the first token of every walk."""
    row = benchmark.pedantic(first_mask, rounds=ROUNDS_FIRST_MASK, warmup_rounds=WARMUP)
    firsts = {walk[0] for walk in json_walks(name)}
    assert all(mask_allows(row[0], token) for token in firsts)
    assert not mask_allows(row[0], eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_json_first_mask_decodekit(benchmark: Any, tag: Tag, name: str) -> None:
    """``Grammar.json_schema(text).compile(vocab)``, a ``Matcher`` and one fill."""
    vocab = _need_decodekit()
    tag(f"json schema first mask: {name}", "decodekit")

    def first_mask() -> np.ndarray:
        mask = np.zeros((1, (vocab.size + 31) // 32), dtype=np.int32)
        dk.Matcher(_decodekit_compile(name)).fill_next_token_bitmask(mask)
        return mask

    bench_first_mask(benchmark, first_mask, vocab.eos_ids[0], name)


@pytest.mark.parametrize("name", NAMES)
def test_json_first_mask_llguidance(benchmark: Any, tag: Tag, name: str) -> None:
    """``LLMatcher`` + one fill (the ``LLTokenizer`` and the lark text around the schema made before)."""
    vocab = llguidance_vocab()
    tag(f"json schema first mask: {name}", "llguidance")
    grammar = llguidance_json_grammar(SCHEMAS[name].schema_text)

    def first_mask() -> np.ndarray:
        mask = vocab.new_bitmask()
        LlguidanceGrammar(vocab, grammar).fill_bitmask(mask)
        return mask.reshape(1, -1)

    bench_first_mask(benchmark, first_mask, vocab.eos_id, name)


@pytest.mark.parametrize("name", NAMES)
def test_json_first_mask_xgrammar(benchmark: Any, tag: Tag, name: str) -> None:
    """``XgrammarJson(vocab, schema)`` (``compile_json_schema``, uncached, + ``GrammarMatcher``), one fill."""
    vocab = _xgrammar_vocab()
    tag(f"json schema first mask: {name}", "xgrammar")
    schema = SCHEMAS[name].schema_text

    def first_mask() -> np.ndarray:
        mask = vocab.new_bitmask()
        XgrammarJson(vocab, schema).fill_bitmask(mask)
        return mask.reshape(1, -1)

    bench_first_mask(benchmark, first_mask, vocab.eos_id, name)


# --- per-token mask walk ----------------------------------------------------------------------------------


def bench_json_walk(benchmark: Any, name: str, make_round: Callable[[], WalkRound], eos_id: int) -> None:
    """Time :func:`run_walks` over ``name``'s instances, a fresh compile (a :class:`WalkRound`) per round."""
    token_walks: Sequence[Sequence[int]] = json_walks(name)
    rounds: list[WalkRound] = []

    def setup() -> tuple[tuple[WalkRound, Sequence[Sequence[int]]], dict[str, Any]]:
        rounds.append(make_round())
        return (rounds[-1], token_walks), {}

    benchmark.pedantic(run_walks, setup=setup, rounds=ROUNDS_WALK, warmup_rounds=WARMUP)
    # The last fill of a walk is at the end of an instance: EOS must be allowed there.
    assert mask_allows(rounds[-1].mask[0], eos_id)
    expected_fills = sum(len(w) + 1 for w in token_walks)
    assert all(len(r.samples) == expected_fills for r in rounds)
    measured = rounds[WARMUP:] if len(rounds) > WARMUP else rounds
    samples_us = np.array([s for r in measured for s in r.samples], dtype=np.float64) / 1e3
    benchmark.extra_info.update(
        mask_median_us=round(float(np.median(samples_us)), 3),
        mask_p99_us=round(float(np.percentile(samples_us, 99)), 3),
        mask_max_us=round(float(samples_us.max()), 3),
        masks=int(samples_us.size),
        fills_per_round=expected_fills,
    )


@pytest.mark.parametrize("name", NAMES)
def test_json_walk_decodekit(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the instances, a fresh compile and ``Matcher`` per round."""
    vocab = _need_decodekit()
    tag(f"json schema mask walk: {name}", "decodekit")

    def make_round() -> WalkRound:
        matcher = dk.Matcher(_decodekit_compile(name))
        mask = np.zeros((1, (vocab.size + 31) // 32), dtype=np.int32)
        return WalkRound(matcher.fill_next_token_bitmask, (mask,), matcher.accept_token, matcher.reset, mask)

    bench_json_walk(benchmark, name, make_round, vocab.eos_ids[0])


@pytest.mark.parametrize("name", NAMES)
def test_json_walk_llguidance(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the instances through llguidance's numpy entry point, a fresh ``LLMatcher`` per round."""
    vocab = llguidance_vocab()
    tag(f"json schema mask walk: {name}", "llguidance")
    from llguidance.numpy import fill_next_token_bitmask

    def make_round() -> WalkRound:
        adapter = LlguidanceJson(vocab, SCHEMAS[name].schema_text)
        mask = vocab.new_bitmask().reshape(1, -1)

        def restart() -> None:
            adapter.rollback(adapter.num_consumed)

        return WalkRound(fill_next_token_bitmask, (adapter._matcher, mask), adapter.consume, restart, mask)

    bench_json_walk(benchmark, name, make_round, vocab.eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_json_walk_xgrammar(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the instances by ``GrammarMatcher.fill_next_token_bitmask``, a new compile per round."""
    vocab = _xgrammar_vocab()
    tag(f"json schema mask walk: {name}", "xgrammar")

    def make_round() -> WalkRound:
        adapter = XgrammarJson(vocab, SCHEMAS[name].schema_text)
        mask = vocab.new_bitmask().reshape(1, -1)

        def restart() -> None:
            adapter.rollback(adapter.num_consumed)

        return WalkRound(adapter._matcher.fill_next_token_bitmask, (mask,), adapter.consume, restart, mask)

    bench_json_walk(benchmark, name, make_round, vocab.eos_id)
