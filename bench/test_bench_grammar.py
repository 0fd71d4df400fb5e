"""Benchmarks of regex-constrained decoding on the Llama 3 vocabulary (128,256 ids) against llguidance and
outlines-core, both driven through :mod:`bench.reference.grammar_anchors`.

The regexes are ten patterns of the grammar tests' corpus (``tests/test_grammar_regex.py::CORPUS``, copied
here so the benchmarks do not import the tests). Every benchmark checks what it computes, so
``pytest bench --benchmark-disable`` doubles as a quick smoke test. llguidance, outlines-core and the
``llama-models`` package (which only supplies ``llama3/tokenizer.model``, located with ``find_spec`` and
never imported) are optional: a missing one shows up as a skip with its reason. The vocabulary objects of
every library (decodekit ``Vocabulary``, llguidance ``LLTokenizer``, outlines ``Vocabulary``) are built
once per session, before any timing.

Groups:

* ``grammar compile: <regex>``: from the pattern to an object that can fill masks.

  - ``decodekit``: ``Grammar.regex(p).compile(vocab)`` with the default ``precompute=None``, which
    computes the mask of every DFA state at compile time when they all fit in 32 MiB (true for all ten).
  - ``decodekit_lazy``: the same with ``precompute=False``: masks are computed on first visit, then cached
    in the ``CompiledGrammar``.
  - ``llguidance``: ``LlguidanceRegex(vocab, p)``, i.e. ``LLMatcher(tokenizer, 'start: /p/')``: parses and
    compiles the grammar; its lexer DFA is built lazily while masks are computed.
  - ``outlines_core``: ``OutlinesRegex(vocab, p)``, i.e. ``Index(p, vocabulary)`` (eager: every reachable
    DFA state against the whole vocabulary) plus a ``Guide``.

* ``grammar mask walk: <regex>``: walks over strings of the language (:data:`REGEXES`, each tokenized by
  greedy longest match with ``AnchorVocab.greedy_tokenize``; the same token sequences for every library).
  At each position of each walk, including the final one where EOS is allowed, one mask row is filled and
  then the next token is consumed. pytest-benchmark times the whole round (every walk: fills, consumes and
  the reset to the start state between walks). Each fill is also timed on its own with
  ``time.perf_counter_ns`` and ``extra_info`` keeps ``mask_median_us``, ``mask_p99_us`` and ``mask_max_us``
  over ``masks`` fills of every measured round (warm-up rounds excluded): the per-token mask cost, the
  number to compare. Every round starts from fresh state objects made by the pedantic ``setup`` (untimed):

  - ``decodekit``: a new ``Matcher`` on the default compiled grammar (compiled once per session, all masks
    precomputed, so a fill is a copy of a cached row).
  - ``decodekit_lazy``: a new ``Grammar.regex(p).compile(vocab, precompute=False)`` and ``Matcher`` every
    round, so the first visit of each state (computing its mask over the vocabulary) is in the samples;
    later visits in the same round hit the grammar's cache.
  - ``llguidance``: a new ``LlguidanceRegex`` (a new ``LLMatcher``) every round. What is cached where: the
    ``LLTokenizer`` (token trie and its precomputed "slices") is per vocabulary and shared by all
    matchers; the lexer (derivre regex DFA, states built lazily on first use) belongs to one ``LLMatcher``
    and survives its ``rollback``, but nothing carries over to a newly constructed ``LLMatcher`` of the
    same grammar (measured: every round of a fresh matcher shows the first-visit tail again, p99 1.2-5x
    that of ``llguidance_warm``, medians within 1.5x). A fresh matcher is thus llguidance's first-visit
    cost, the analogue of ``decodekit_lazy``.
  - ``llguidance_warm``: one ``LlguidanceRegex`` per regex for the whole session, rolled back to the
    start between walks, so its lexer states are all built after the warm-up round: its steady state.
  - ``outlines_core``: the ``Index`` is built once per session (it is eager, so nothing is left to warm
    up) and the ``Guide`` is rolled back to the start state between walks.

  The timed call is each library's own numpy entry point with the same ``[1, words]`` int32 row:
  ``Matcher.fill_next_token_bitmask(mask)``, ``llguidance.numpy.fill_next_token_bitmask(matcher, mask)``,
  ``outlines_core.kernels.numpy.fill_next_token_bitmask(guide, mask)`` (it needs numba: skipped without
  the bench extra). Both decodekit and outlines-core also have a raw-pointer entry point, timed as
  ``decodekit_ptr`` (``Matcher.unsafe_fill_next_token_bitmask_ptr``) and ``outlines_core_ptr``
  (``Guide.write_mask_into``, what vLLM calls) (the adapters' ``fill_bitmask``
  adds its own row check, about 0.5 µs, which is left out). The walk strings are ones all three libraries
  accept under greedy tokenization: outlines-core drops tokens that end one byte past a match point (see
  the grammar_anchors docstring), which rules out every exponent under greedy tokenization (the corpus
  example ``-0.5e-10`` is tokenized ``-|0|.|5|e|-|10``, and ``e`` after ``-0.5`` is dropped), so the
  decimal walks have none.

* ``grammar batch fill 64``: one ``[64, words]`` mask for 64 matchers on the default compiled grammars, a
  mix of the ten regexes at positions drawn with a fixed seed along their walks. ``decodekit``:
  ``fill_next_token_bitmask_batch`` with ``set_num_threads(2)`` (restored to the default afterwards);
  ``sequential``: a Python loop of 64 ``Matcher.fill_next_token_bitmask(mask, row)`` calls. Both must
  write the same rows. Every mask is cached here, so each row is a 16 KiB copy and the batch runs on the
  calling thread.
* ``grammar batch fill 64, first visits``: the same 64 positions on grammars compiled with
  ``precompute=False`` afresh for every round (outside the timing), so most rows walk the token trie:
  the thread pool's case. Same two implementations.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

from tests.vocabularies import llama3_special_tokens

from .reference.grammar_anchors import (
    AnchorVocab,
    LlguidanceRegex,
    OutlinesRegex,
    llguidance_tokenizer,
    outlines_vocabulary,
)

Tag = Callable[[str, str], None]
Mask = npt.NDArray[np.int32]

LLAMA_SKIP_REASON = "llama-models is not installed (it supplies the Llama 3 tokenizer.model)"
LLGUIDANCE_SKIP_REASON = "llguidance is not installed; install it to run the llguidance benchmarks"
OUTLINES_SKIP_REASON = "outlines-core is not installed; install it to run the outlines-core benchmarks"
EOS = "<|end_of_text|>"

ROUNDS_COMPILE = 20
ROUNDS_COMPILE_LAZY = 50
# outlines-core indexes every DFA state against the whole vocabulary: 20-220 ms per regex here.
ROUNDS_COMPILE_OUTLINES = 5
ROUNDS_WALK = 100
WARMUP_WALK = 1
ROUNDS_BATCH = 200
ROUNDS_BATCH_LAZY = 20
BATCH = 64
BATCH_THREADS = 2

# name -> (pattern, walk strings). Patterns copied from tests/test_grammar_regex.py::CORPUS; the strings
# are its examples (but -0.5e-10, see the module docstring) plus a few more, all accepted by all three.
REGEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "integer": (r"-?(0|[1-9][0-9]*)", ("-120", "0", "98765432", "42", "-7", "1000000", "31415926535")),
    "decimal": (
        r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][+-]?[0-9]+)?",
        ("3.14159", "0.001", "-12.75", "100.0", "-273.15", "-0.0625"),
    ),
    "date": (
        r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
        ("2026-11-28", "1999-01-01", "2024-02-29", "1970-12-31", "2000-10-10"),
    ),
    "timestamp": (
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
        (
            "2026-11-28T09:33:28.123Z",
            "1999-01-01T00:00:00+05:30",
            "2024-06-30T23:59:59Z",
            "2010-10-10T10:10:10.5-08:00",
        ),
    ),
    "email": (
        r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}",
        ("jane.doe+spam@mail.example.org", "a@b.co", "first_last%tag@sub-domain.example.co.uk", "x1@host.io"),
    ),
    "uuid": (
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        (
            "123e4567-e89b-12d3-a456-426614174000",
            "00000000-0000-0000-0000-000000000000",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "deadbeef-dead-beef-dead-beefdeadbeef",
        ),
    ),
    "identifier": (
        r"[A-Za-z_][A-Za-z0-9_]*",
        ("snake_case_name2", "X", "_private", "CamelCaseIdentifier", "x1_y2_z3", "__init__"),
    ),
    "quoted": (
        r'"([^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"',
        (
            '"say \\"hi\\" \u2014 caf\u00e9 \u65e5\u672c\\n"',
            '""',
            '"hello world"',
            '"tab\\tand \\u00e9 unicode \u00fc\u00df"',
            '"path\\/to\\/file"',
            '"\u65e5\u672c\u8a9e\u306e\u6587\u7ae0"',
        ),
    ),
    "keywords": (r"(true|false|null|none|nothing)", ("null", "nothing", "true", "false", "none")),
    "sentence": (
        r"(The answer is|Answer:) (yes|no)\.",
        ("The answer is yes.", "Answer: no.", "The answer is no.", "Answer: yes."),
    ),
}
NAMES = tuple(REGEXES)


# --- vocabularies and shared inputs (built once per session) ---------------------------------------------


def _tokenizer_path() -> str:
    """``llama_models/llama3/tokenizer.model``, found without importing the package (skip if missing)."""
    spec = importlib.util.find_spec("llama_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(LLAMA_SKIP_REASON)
    path = Path(next(iter(spec.submodule_search_locations)), "llama3", "tokenizer.model")
    if not path.is_file():
        pytest.skip(f"{path} is missing; {LLAMA_SKIP_REASON}")
    return str(path)


@cache
def _dk_vocab(path: str) -> dk.Vocabulary:
    return dk.Vocabulary.from_tiktoken(path, llama3_special_tokens(), eos_tokens=[EOS])


@cache
def _anchor_vocab(path: str) -> AnchorVocab:
    vocab = AnchorVocab.from_tiktoken(path, list(llama3_special_tokens()), EOS)
    reference = _dk_vocab(path)
    assert vocab.vocab_size == reference.size == 128_256
    assert [vocab.eos_id] == reference.eos_ids
    return vocab


def dk_vocab() -> dk.Vocabulary:
    """The decodekit Llama 3 vocabulary."""
    return _dk_vocab(_tokenizer_path())


def anchor_vocab() -> AnchorVocab:
    """The anchors' Llama 3 vocabulary (same ids, same EOS)."""
    return _anchor_vocab(_tokenizer_path())


def llguidance_vocab() -> AnchorVocab:
    """:func:`anchor_vocab` with its llguidance ``LLTokenizer`` built (skip without llguidance)."""
    pytest.importorskip("llguidance", reason=LLGUIDANCE_SKIP_REASON)
    vocab = anchor_vocab()
    llguidance_tokenizer(vocab)
    return vocab


def outlines_vocab() -> AnchorVocab:
    """:func:`anchor_vocab` with its outlines ``Vocabulary`` built (skip without outlines-core)."""
    pytest.importorskip("outlines_core", reason=OUTLINES_SKIP_REASON)
    vocab = anchor_vocab()
    outlines_vocabulary(vocab)
    return vocab


@cache
def walks(name: str) -> tuple[tuple[int, ...], ...]:
    """The token sequences of ``name``'s walk strings (greedy longest match over the Llama 3 tokens)."""
    vocab = anchor_vocab()
    return tuple(tuple(vocab.greedy_tokenize(s.encode())) for s in REGEXES[name][1])


@cache
def compiled(name: str) -> dk.CompiledGrammar:
    """``name``'s grammar compiled with the default (auto) precompute, shared by the session."""
    grammar = dk.Grammar.regex(REGEXES[name][0]).compile(dk_vocab())
    assert grammar.num_cached_masks == grammar.num_states, "every state mask should be precomputed"
    return grammar


@cache
def _outlines(name: str) -> OutlinesRegex:
    return OutlinesRegex(outlines_vocab(), REGEXES[name][0])


@cache
def _llguidance_warm(name: str) -> LlguidanceRegex:
    return LlguidanceRegex(llguidance_vocab(), REGEXES[name][0])


def _allowed(row: npt.NDArray[np.int32], token: int) -> bool:
    return bool((int(row[token >> 5]) >> (token & 31)) & 1)


# --- compile ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_grammar_compile_decodekit(benchmark: Any, tag: Tag, name: str) -> None:
    """``Grammar.regex(p).compile(vocab)``, default precompute (every state mask computed now)."""
    tag(f"grammar compile: {name}", "decodekit")
    vocab, pattern = dk_vocab(), REGEXES[name][0]
    grammar = benchmark.pedantic(
        lambda: dk.Grammar.regex(pattern).compile(vocab), rounds=ROUNDS_COMPILE, warmup_rounds=1
    )
    assert grammar.num_cached_masks == grammar.num_states
    benchmark.extra_info["num_states"] = grammar.num_states


@pytest.mark.parametrize("name", NAMES)
def test_grammar_compile_decodekit_lazy(benchmark: Any, tag: Tag, name: str) -> None:
    """``Grammar.regex(p).compile(vocab, precompute=False)``: no mask computed yet."""
    tag(f"grammar compile: {name}", "decodekit_lazy")
    vocab, pattern = dk_vocab(), REGEXES[name][0]
    grammar = benchmark.pedantic(
        lambda: dk.Grammar.regex(pattern).compile(vocab, precompute=False),
        rounds=ROUNDS_COMPILE_LAZY,
        warmup_rounds=1,
    )
    assert grammar.num_cached_masks == 0
    benchmark.extra_info["num_states"] = grammar.num_states


@pytest.mark.parametrize("name", NAMES)
def test_grammar_compile_llguidance(benchmark: Any, tag: Tag, name: str) -> None:
    """``LlguidanceRegex(vocab, p)`` (an ``LLMatcher``); the ``LLTokenizer`` is built beforehand."""
    vocab = llguidance_vocab()
    tag(f"grammar compile: {name}", "llguidance")
    pattern = REGEXES[name][0]
    matcher = benchmark.pedantic(
        lambda: LlguidanceRegex(vocab, pattern), rounds=ROUNDS_COMPILE, warmup_rounds=1
    )
    assert matcher.num_consumed == 0


@pytest.mark.parametrize("name", NAMES)
def test_grammar_compile_outlines(benchmark: Any, tag: Tag, name: str) -> None:
    """``OutlinesRegex(vocab, p)`` (``Index`` + ``Guide``); the outlines ``Vocabulary`` is built before."""
    vocab = outlines_vocab()
    tag(f"grammar compile: {name}", "outlines_core")
    pattern = REGEXES[name][0]
    guide = benchmark.pedantic(lambda: OutlinesRegex(vocab, pattern), rounds=ROUNDS_COMPILE_OUTLINES)
    assert guide.num_consumed == 0


# --- per-token mask walk ---------------------------------------------------------------------------------


@dataclass
class WalkRound:
    """Fresh state for one round of walks: how to fill, consume and restart, and where fill times go.

    The timed fill is ``fill(*fill_args)``, a direct call of the library's entry point.
    """

    fill: Callable[..., object]
    fill_args: tuple[Any, ...]
    consume: Callable[[int], bool]
    restart: Callable[[], object]
    mask: Mask
    samples: list[int] = field(default_factory=list)


def run_walks(state: WalkRound, token_walks: Sequence[Sequence[int]]) -> None:
    """Walk every token sequence from the start state, timing each fill (including the final one)."""
    clock = time.perf_counter_ns
    fill, args, consume, samples = state.fill, state.fill_args, state.consume, state.samples
    for tokens in token_walks:
        state.restart()
        for token in tokens:
            start = clock()
            fill(*args)
            samples.append(clock() - start)
            if not consume(token):
                raise AssertionError(f"token {token} rejected")
        start = clock()
        fill(*args)
        samples.append(clock() - start)


def bench_walk(benchmark: Any, name: str, make_round: Callable[[], WalkRound], eos_id: int) -> None:
    """Time :func:`run_walks` over ``name``'s walks with a fresh :class:`WalkRound` per round."""
    token_walks = walks(name)
    rounds: list[WalkRound] = []

    def setup() -> tuple[tuple[WalkRound, Sequence[Sequence[int]]], dict[str, Any]]:
        rounds.append(make_round())
        return (rounds[-1], token_walks), {}

    benchmark.pedantic(run_walks, setup=setup, rounds=ROUNDS_WALK, warmup_rounds=WARMUP_WALK)
    # The last fill of a walk is at the end of a string of the language: EOS must be allowed there.
    assert _allowed(rounds[-1].mask[0], eos_id)
    measured = rounds[WARMUP_WALK:] if len(rounds) > WARMUP_WALK else rounds
    samples_us = np.array([s for r in measured for s in r.samples], dtype=np.float64) / 1e3
    expected_fills = sum(len(w) + 1 for w in token_walks)
    assert all(len(r.samples) == expected_fills for r in rounds)
    benchmark.extra_info.update(
        mask_median_us=round(float(np.median(samples_us)), 3),
        mask_p99_us=round(float(np.percentile(samples_us, 99)), 3),
        mask_max_us=round(float(samples_us.max()), 3),
        masks=int(samples_us.size),
        fills_per_round=expected_fills,
    )


def _decodekit_round(grammar: dk.CompiledGrammar) -> WalkRound:
    matcher = dk.Matcher(grammar)
    mask = dk.allocate_token_bitmask(1, grammar.vocab.size)
    return WalkRound(matcher.fill_next_token_bitmask, (mask,), matcher.accept_token, matcher.reset, mask)


def _llguidance_round(adapter: LlguidanceRegex) -> WalkRound:
    from llguidance.numpy import fill_next_token_bitmask

    mask = adapter.vocab.new_bitmask().reshape(1, -1)
    return WalkRound(
        fill_next_token_bitmask,
        (adapter._matcher, mask),
        adapter.consume,
        lambda: adapter.rollback(adapter.num_consumed),
        mask,
    )


def _decodekit_ptr_round(grammar: dk.CompiledGrammar) -> WalkRound:
    matcher = dk.Matcher(grammar)
    mask = dk.allocate_token_bitmask(1, grammar.vocab.size)
    return WalkRound(
        matcher.unsafe_fill_next_token_bitmask_ptr,
        (mask.ctypes.data, mask.shape[1]),
        matcher.accept_token,
        matcher.reset,
        mask,
    )


def _outlines_round(adapter: OutlinesRegex, raw: bool) -> WalkRound:
    mask = adapter.vocab.new_bitmask().reshape(1, -1)
    if raw:
        # The pointer call that engines (vLLM) make and that outlines' numpy kernel makes after its checks.
        fill: Callable[..., object] = adapter._guide.write_mask_into
        args: tuple[Any, ...] = (mask.ctypes.data, mask.size, mask.itemsize)
    else:
        pytest.importorskip("numba", reason="outlines-core's numpy kernel needs numba (the bench extra)")
        from outlines_core.kernels.numpy import fill_next_token_bitmask

        fill, args = fill_next_token_bitmask, (adapter._guide, mask)
    return WalkRound(
        fill,
        args,
        adapter.consume,
        lambda: adapter.rollback(adapter.num_consumed),
        mask,
    )


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_decodekit(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the walks, default compile (all masks precomputed), a new ``Matcher`` per round."""
    tag(f"grammar mask walk: {name}", "decodekit")
    grammar = compiled(name)
    bench_walk(benchmark, name, lambda: _decodekit_round(grammar), dk_vocab().eos_ids[0])


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_decodekit_lazy(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the walks, a new ``precompute=False`` compile per round (first-visit cost included)."""
    tag(f"grammar mask walk: {name}", "decodekit_lazy")
    vocab, pattern = dk_vocab(), REGEXES[name][0]
    bench_walk(
        benchmark,
        name,
        lambda: _decodekit_round(dk.Grammar.regex(pattern).compile(vocab, precompute=False)),
        vocab.eos_ids[0],
    )


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_llguidance(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the walks, a new ``LLMatcher`` per round (its lexer states built during the walk)."""
    vocab = llguidance_vocab()
    tag(f"grammar mask walk: {name}", "llguidance")
    pattern = REGEXES[name][0]
    bench_walk(benchmark, name, lambda: _llguidance_round(LlguidanceRegex(vocab, pattern)), vocab.eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_llguidance_warm(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the walks, one ``LLMatcher`` for the session, rolled back between walks."""
    vocab = llguidance_vocab()
    tag(f"grammar mask walk: {name}", "llguidance_warm")
    adapter = _llguidance_warm(name)
    bench_walk(benchmark, name, lambda: _llguidance_round(adapter), vocab.eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_decodekit_ptr(benchmark: Any, tag: Tag, name: str) -> None:
    """As ``decodekit``, through the raw-pointer ``unsafe_fill_next_token_bitmask_ptr``."""
    tag(f"grammar mask walk: {name}", "decodekit_ptr")
    grammar = compiled(name)
    bench_walk(benchmark, name, lambda: _decodekit_ptr_round(grammar), dk_vocab().eos_ids[0])


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_outlines(benchmark: Any, tag: Tag, name: str) -> None:
    """Masks along the walks through outlines' numpy kernel, one ``Index`` for the session, the ``Guide``
    rolled back between walks."""
    vocab = outlines_vocab()
    tag(f"grammar mask walk: {name}", "outlines_core")
    adapter = _outlines(name)
    bench_walk(benchmark, name, lambda: _outlines_round(adapter, raw=False), vocab.eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walk_outlines_ptr(benchmark: Any, tag: Tag, name: str) -> None:
    """As ``outlines_core``, through the raw ``Guide.write_mask_into(pointer, size, 4)``."""
    vocab = outlines_vocab()
    tag(f"grammar mask walk: {name}", "outlines_core_ptr")
    adapter = _outlines(name)
    bench_walk(benchmark, name, lambda: _outlines_round(adapter, raw=True), vocab.eos_id)


@pytest.mark.parametrize("name", NAMES)
def test_grammar_walks_match_llguidance(name: str) -> None:
    """decodekit's masks equal llguidance's (plain regular language, no forcing) along every walk."""
    vocab = llguidance_vocab()
    adapter = LlguidanceRegex(vocab, REGEXES[name][0])
    matcher = dk.Matcher(compiled(name))
    ours, theirs = dk.allocate_token_bitmask(1, vocab.vocab_size), vocab.new_bitmask()
    for tokens in walks(name):
        matcher.reset()
        adapter.rollback(adapter.num_consumed)
        for position, token in enumerate([*tokens, None]):
            matcher.fill_next_token_bitmask(ours)
            adapter.fill_bitmask(theirs)
            assert np.array_equal(ours[0], theirs), f"{name}: masks differ after {position} tokens"
            if token is not None:
                assert matcher.accept_token(token)
                assert adapter.consume(token)


# --- batched fill ----------------------------------------------------------------------------------------


@cache
def _batch_positions() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """64 (regex, consumed tokens) pairs: regexes in turn, a walk and a position drawn with seed 0."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(BATCH):
        name = NAMES[i % len(NAMES)]
        walk = walks(name)[int(rng.integers(len(walks(name))))]
        out.append((name, walk[: int(rng.integers(len(walk) + 1))]))
    return tuple(out)


def _batch_matchers(lazy: bool = False) -> list[dk.Matcher]:
    matchers = []
    fresh = {name: dk.Grammar.regex(REGEXES[name][0]).compile(dk_vocab(), precompute=False) for name in NAMES}
    for name, prefix in _batch_positions():
        matcher = dk.Matcher(fresh[name] if lazy else compiled(name))
        assert matcher.accept_tokens(np.array(prefix, dtype=np.int32)) == len(prefix)
        matchers.append(matcher)
    return matchers


def _expected_batch(matchers: Sequence[dk.Matcher]) -> Mask:
    mask = dk.allocate_token_bitmask(len(matchers), dk_vocab().size)
    for row, matcher in enumerate(matchers):
        matcher.fill_next_token_bitmask(mask, row)
    return mask


def test_grammar_batch_fill_decodekit(benchmark: Any, tag: Tag) -> None:
    """``fill_next_token_bitmask_batch`` over 64 matchers on 2 threads."""
    matchers = _batch_matchers()
    expected = _expected_batch(matchers)
    mask = dk.allocate_token_bitmask(BATCH, dk_vocab().size)
    dk.set_num_threads(BATCH_THREADS)
    try:
        tag(f"grammar batch fill {BATCH}", "decodekit")
        benchmark.pedantic(
            dk.fill_next_token_bitmask_batch, (matchers, mask), rounds=ROUNDS_BATCH, warmup_rounds=1
        )
    finally:
        dk.set_num_threads(0)
    np.testing.assert_array_equal(mask, expected)


def test_grammar_batch_fill_sequential(benchmark: Any, tag: Tag) -> None:
    """A Python loop of 64 ``Matcher.fill_next_token_bitmask(mask, row)`` calls."""
    tag(f"grammar batch fill {BATCH}", "sequential")
    matchers = _batch_matchers()
    expected = _expected_batch(matchers)
    mask = dk.allocate_token_bitmask(BATCH, dk_vocab().size)

    def loop() -> None:
        for row, matcher in enumerate(matchers):
            matcher.fill_next_token_bitmask(mask, row)

    benchmark.pedantic(loop, rounds=ROUNDS_BATCH, warmup_rounds=1)
    np.testing.assert_array_equal(mask, expected)


def _bench_first_visits(benchmark: Any, fill: Callable[[list[dk.Matcher], Mask], None]) -> None:
    expected = _expected_batch(_batch_matchers())
    mask = dk.allocate_token_bitmask(BATCH, dk_vocab().size)
    dk.set_num_threads(BATCH_THREADS)
    try:
        benchmark.pedantic(
            fill, setup=lambda: ((_batch_matchers(lazy=True), mask), {}), rounds=ROUNDS_BATCH_LAZY
        )
    finally:
        dk.set_num_threads(0)
    np.testing.assert_array_equal(mask, expected)


def test_grammar_batch_fill_first_visits_decodekit(benchmark: Any, tag: Tag) -> None:
    """``fill_next_token_bitmask_batch`` over 64 matchers whose masks are not computed yet, 2 threads."""
    tag(f"grammar batch fill {BATCH}, first visits", "decodekit")
    _bench_first_visits(benchmark, dk.fill_next_token_bitmask_batch)


def test_grammar_batch_fill_first_visits_sequential(benchmark: Any, tag: Tag) -> None:
    """A Python loop of 64 fills whose masks are not computed yet."""
    tag(f"grammar batch fill {BATCH}, first visits", "sequential")

    def loop(matchers: list[dk.Matcher], mask: Mask) -> None:
        for row, matcher in enumerate(matchers):
            matcher.fill_next_token_bitmask(mask, row)

    _bench_first_visits(benchmark, loop)
