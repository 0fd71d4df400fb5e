"""Benchmarks of decodekit's n-gram drafters: prompt lookup and ADED's tri-gram table.

Each ``benchmark.group`` holds one decodekit benchmark (impl ``decodekit``, the report's baseline) and its
references, so ``bench/report.py`` can print ratios. Every benchmark checks its output (the prompt-lookup
references must propose exactly what decodekit proposes), so ``pytest bench --benchmark-disable`` doubles
as a smoke test. The references are optional: numba, torch + transformers and draftretriever each go
through ``pytest.importorskip``, so a missing one shows up as a skip with its reason.

Groups:

* ``prompt_lookup_ctx1k``, ``prompt_lookup_ctx16k``, ``prompt_lookup_ctx64k``: one decode step of prompt
  lookup (min_n=1, max_n=4, 8 draft tokens) on a context of 1,024 / 16,384 / 65,536 tokens whose last
  4-gram occurred earlier (see :func:`_context`), so every implementation has to find a match.

  - decodekit (``decodekit``): a ``PromptLookup(min_n=1, max_n=4, max_depth=8, max_nodes=8)`` already
    holding the first ``n - 1`` tokens; the timed step is ``extend([last token])`` + ``propose()`` +
    ``rollback(1)``, all three together, so every round sees the same ``n``-token context (the rollback
    is cheap, and a decode loop pays an ``extend`` per step anyway). The proposal is a chain of 8 tokens.
  - vLLM (``vllm_numba``): :func:`bench.reference.vllm_ngram.vllm_ngram_propose` (vLLM V1's numba KMP
    proposer) on the whole ``n``-token context array, as vLLM runs it every step; numba compilation is
    done before timing.
  - HF transformers (``hf_prompt_lookup``): ``PromptLookupCandidateGenerator(max_matching_ngram_size=4,
    num_output_tokens=8)`` and its ``get_candidates`` on a ``[1, n]`` int64 tensor (no EOS, no logits
    processor, ``max_length`` out of reach). Its ``unfold`` scan tries n = 4, 3, 2, 1 and takes the first
    (earliest) window with a continuation: the same proposal as vLLM's.

* ``trigram_build``: from a corpus to a queryable top-12 tri-gram table. The corpus (:func:`_corpus`) is
  synthetic and independent of decodekit: 200 sequences of 1,000 tokens over a 32,000-token vocabulary,
  unigram frequencies Zipf-distributed (exponent 1.1, ids shuffled). Every token has 8 favourite
  successors drawn from that unigram distribution, and with probability 0.6 the next token is one of the
  previous token's favourites (the i-th with weight 1/i) instead of a unigram draw, so bigrams and
  trigrams repeat as in text: 117k distinct trigrams and 61k distinct pairs, 13k trigrams occurring more
  than once; the most frequent pair occurs 6k times with over 900 different continuations.

  - decodekit: ``TrigramTable.from_corpus(corpus, top_k=12)`` on the int32 arrays, in memory.
  - draftretriever (``draftretriever``, the ADED authors' package, 0.1.x): ``Writer(path, vocab_size)``,
    ``add_entry`` per sequence, ``finalize()`` (normalizes every pair's counts and writes the whole table
    to disk with bincode), then ``Reader(path)`` (reads it back and keeps each pair's 12 most likely
    continuations, its hard-coded top-k). That is its only way from a corpus to a table it can search.
    Its ``add_entry`` takes Python lists, which are made before timing; the writer also rewrites the
    file when it is dropped, which happens outside the timing.

* ``trigram_propose``: one draft tree after the corpus's most frequent token pair ``(a, b)``.

  - decodekit: ``table.propose((a, b), max_nodes=64, iterations=150, rollout_depth=4, seeds=0)``.
  - draftretriever: ``reader.search([a, b], choices=64)``. Its ADED Monte-Carlo tree search has the
    same iteration budget over the same top-12 table: 150 iterations, each descending and rolling out
    to 4 tokens counting the root (decodekit rolls out 4 tokens below the expanded leaf); its pUCT uses
    c1=32, c2=8 and ``thread_rng``. It then keeps its 24 most visited paths, appends each one's argmax
    continuation, de-duplicates them, cuts them to ``choices`` tokens and builds Medusa-style buffers
    (attention mask, tree indices, position ids, retrieve indices) returned as Python lists. Its trees
    come out smaller than decodekit's (41-43 draft nodes in 23 paths, depth 3-4, against 64 nodes of
    depth up to 4); ``num_nodes`` is recorded. With a two-token context its search does not adapt the
    table (it adapts on the trigrams of a longer context).
    ``k`` and ``long`` are accepted but unused by that version.

* ``trigram_propose_buffers``: as ``trigram_propose``, but decodekit also builds the buffers that
  draftretriever's ``search`` returns: ``propose`` + ``attention_mask()`` + ``positions(0)`` +
  ``retrieve_indices()`` (numpy arrays). draftretriever's benchmark is the same ``search`` call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

from .reference.vllm_ngram import ngram_propose_python, vllm_ngram_propose, warmup

Tag = Callable[[str, str], None]
IntArray = npt.NDArray[np.int32]

NUMBA_SKIP_REASON = "numba is not installed; install the bench extra to run the vLLM n-gram reference"
TORCH_SKIP_REASON = "torch is not installed; install the bench extra to run the HF prompt-lookup reference"
TRANSFORMERS_SKIP_REASON = (
    "transformers is not installed; install the bench extra to run the HF prompt-lookup reference"
)
DRAFTRETRIEVER_SKIP_REASON = (
    "draftretriever is not installed; install the bench extra to run the ADED tri-gram references"
)

VOCAB = 32_000
MIN_N, MAX_N, DRAFT_LEN = 1, 4, 8
# The context's last 12 tokens copy an earlier span; the 4-gram match is its last 4 tokens.
COPIED_SPAN = 12
CONTEXT_LENGTHS = [
    pytest.param(1_024, "prompt_lookup_ctx1k", id="ctx1k"),
    pytest.param(16_384, "prompt_lookup_ctx16k", id="ctx16k"),
    pytest.param(65_536, "prompt_lookup_ctx64k", id="ctx64k"),
]
CORPUS_SEQUENCES, CORPUS_LENGTH = 200, 1_000
TOP_K = 12
MAX_NODES, ITERATIONS, ROLLOUT_DEPTH = 64, 150, 4

ROUNDS_FAST = 200
ITERATIONS_FAST = 10  # calls per round for the microsecond-scale benchmarks
# HF's get_candidates takes tens of milliseconds at 16k-64k tokens on a small machine.
ROUNDS_HF = 20
ROUNDS_BUILD = 10
ROUNDS_PROPOSE = 100


# --- inputs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    tokens: IntArray  # [n]
    expected: IntArray  # [8]: what follows the earliest occurrence of the last 4-gram


@cache
def _context(n: int) -> Context:
    """A token stream of ``n`` tokens whose last 4-gram occurred once before, in the first half.

    Uniform random ids over a 32k vocabulary, with 32 phrases of 8-47 tokens planted ``n / 256`` times at
    random places (repeated spans, as in code or retrieved documents, so shorter n-grams match often and
    the KMP scan has partial matches to fall back from). The last 12 tokens copy a span from the first
    half, so the longest suffix match is a 4-gram (the cap) with a continuation of 8 tokens. The expected
    proposal is found here by brute force, independently of every implementation.
    """
    rng = np.random.default_rng(n)
    tokens = rng.integers(0, VOCAB, size=n)
    phrases = [rng.integers(0, VOCAB, size=int(rng.integers(8, 48))) for _ in range(32)]
    body = n - 2 * COPIED_SPAN
    for _ in range(max(1, n // 256)):
        phrase = phrases[int(rng.integers(len(phrases)))]
        pos = int(rng.integers(0, body - len(phrase)))
        tokens[pos : pos + len(phrase)] = phrase
    # The copied span is drawn afresh (not from a planted phrase), so its only earlier occurrence is src.
    src = int(rng.integers(body // 4, body // 2))
    tokens[src : src + COPIED_SPAN] = rng.integers(0, VOCAB, size=COPIED_SPAN)
    tokens[n - COPIED_SPAN :] = tokens[src : src + COPIED_SPAN]
    tokens = tokens.astype(np.int32)
    windows = np.lib.stride_tricks.sliding_window_view(tokens[:-1], MAX_N)
    first = int(np.flatnonzero((windows == tokens[-MAX_N:]).all(axis=1))[0])
    assert first == src + COPIED_SPAN - MAX_N, "the planted span must be the earliest 4-gram match"
    start = first + MAX_N
    return Context(tokens, tokens[start : start + DRAFT_LEN].copy())


@cache
def _corpus() -> tuple[IntArray, ...]:
    """The synthetic tri-gram corpus described in the module docstring (fixed seed)."""
    rng = np.random.default_rng(20)
    unigram = np.arange(1, VOCAB + 1, dtype=np.float64) ** -1.1
    unigram /= unigram.sum()
    ids = rng.permutation(VOCAB)
    favourites = ids[rng.choice(VOCAB, size=(VOCAB, 8), p=unigram)]
    favourite_p = 1.0 / np.arange(1, 9, dtype=np.float64)
    favourite_p /= favourite_p.sum()
    sequences = []
    for _ in range(CORPUS_SEQUENCES):
        background = ids[rng.choice(VOCAB, size=CORPUS_LENGTH, p=unigram)].tolist()
        follow = (rng.random(CORPUS_LENGTH) < 0.6).tolist()
        pick = rng.choice(8, size=CORPUS_LENGTH, p=favourite_p).tolist()
        seq = [background[0]]
        for i in range(1, CORPUS_LENGTH):
            seq.append(int(favourites[seq[-1], pick[i]]) if follow[i] else background[i])
        sequences.append(np.asarray(seq, dtype=np.int32))
    return tuple(sequences)


@dataclass(frozen=True)
class CorpusStats:
    trigrams: Counter[tuple[int, int, int]]
    pair_counts: Counter[tuple[int, int]]
    top_pair: tuple[int, int]


@cache
def _corpus_stats() -> CorpusStats:
    trigrams: Counter[tuple[int, int, int]] = Counter()
    for seq in _corpus():
        s = seq.tolist()
        trigrams.update(zip(s, s[1:], s[2:], strict=False))
    pairs: Counter[tuple[int, int]] = Counter()
    for (a, b, _), count in trigrams.items():
        pairs[(a, b)] += count
    return CorpusStats(trigrams, pairs, max(pairs, key=lambda p: (pairs[p], p)))


@cache
def _table() -> dk.TrigramTable:
    return dk.TrigramTable.from_corpus(list(_corpus()), top_k=TOP_K)


# --- checks ----------------------------------------------------------------------------------------------


def _check_chain(tree: dk.DraftTree, ctx: Context) -> None:
    """Root = last context token, then the 8 expected tokens as a chain."""
    assert tree.num_nodes == DRAFT_LEN + 1
    np.testing.assert_array_equal(tree.parents, np.arange(-1, DRAFT_LEN))
    assert tree.tokens[0] == ctx.tokens[-1]
    np.testing.assert_array_equal(tree.tokens[1:], ctx.expected)


def _check_trigram_tree(tree: dk.DraftTree, stats: CorpusStats, table: dk.TrigramTable) -> None:
    """Root ``b``; every node continues its two predecessors with one of the table's top-12 tokens."""
    a, b = stats.top_pair
    parents, tokens = tree.parents.tolist(), tree.tokens.tolist()
    assert 2 <= len(tokens) <= MAX_NODES + 1
    assert parents[0] == -1
    assert tokens[0] == b
    for node in range(1, len(tokens)):
        parent = parents[node]
        assert 0 <= parent < node
        before = a if parent == 0 else tokens[parents[parent]]
        assert (before, tokens[parent], tokens[node]) in stats.trigrams
        assert tokens[node] in table.lookup(before, tokens[parent])[0].tolist()


def _check_draftretriever_search(result: Any, stats: CorpusStats) -> int:
    """draftretriever's paths continue ``(a, b)`` through corpus trigrams; its buffers are consistent.

    Returns the number of draft nodes (the root excluded).
    """
    paths, attn_mask, tree_indices, position_ids, retrieve = result
    a, b = stats.top_pair
    assert paths, "the most frequent pair must yield a draft"
    for path in paths:
        tokens = [t for t in path if t != -2]  # -2 pads the paths to one length
        assert path == tokens + [-2] * (len(path) - len(tokens))
        context = [a, b, *tokens]
        for i in range(len(tokens)):
            assert (context[i], context[i + 1], context[i + 2]) in stats.trigrams
    nodes = len(tree_indices)
    mask = np.asarray(attn_mask)
    assert mask.shape == (nodes, nodes)
    assert (np.diag(mask) == 1).all()
    assert (mask[:, 0] == 1).all()
    assert len(position_ids) == nodes
    assert position_ids[0] == 0
    assert max(position_ids) == max(len([t for t in p if t != -2]) for p in paths)
    assert all(row[0] == 0 for row in retrieve)
    return nodes - 1


# --- prompt lookup ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "group"), CONTEXT_LENGTHS)
def test_prompt_lookup_decodekit(benchmark: Any, tag: Tag, n: int, group: str) -> None:
    """``extend([t])`` + ``propose()`` + ``rollback(1)`` on a ``PromptLookup`` holding ``n - 1`` tokens."""
    tag(group, "decodekit")
    benchmark.extra_info["context_tokens"] = n
    ctx = _context(n)
    lookup = dk.PromptLookup(min_n=MIN_N, max_n=MAX_N, max_depth=DRAFT_LEN, max_nodes=DRAFT_LEN)
    lookup.extend(ctx.tokens[:-1])
    last = ctx.tokens[-1:]

    def step() -> dk.DraftTree:
        lookup.extend(last)
        tree = lookup.propose()
        lookup.rollback(1)
        return tree

    tree = benchmark.pedantic(step, rounds=ROUNDS_FAST, iterations=ITERATIONS_FAST, warmup_rounds=1)
    _check_chain(tree, ctx)
    assert len(lookup) == n - 1, "every step must leave the context as it found it"


@pytest.mark.parametrize(("n", "group"), CONTEXT_LENGTHS)
def test_prompt_lookup_vllm_numba(benchmark: Any, tag: Tag, n: int, group: str) -> None:
    """vLLM's numba KMP proposer on the whole ``n``-token context; must propose what decodekit proposes."""
    pytest.importorskip("numba", reason=NUMBA_SKIP_REASON)
    tag(group, "vllm_numba")
    benchmark.extra_info["context_tokens"] = n
    ctx = _context(n)
    warmup(ctx.tokens.dtype)
    proposal = benchmark.pedantic(
        lambda: vllm_ngram_propose(ctx.tokens, MIN_N, MAX_N, DRAFT_LEN),
        rounds=ROUNDS_FAST,
        iterations=ITERATIONS_FAST if n <= 16_384 else 1,
        warmup_rounds=1,
    )
    np.testing.assert_array_equal(proposal, ctx.expected)
    lookup = dk.PromptLookup(min_n=MIN_N, max_n=MAX_N, max_depth=DRAFT_LEN, max_nodes=DRAFT_LEN)
    lookup.extend(ctx.tokens)
    np.testing.assert_array_equal(lookup.propose().tokens[1:], proposal)


@pytest.mark.parametrize(("n", "group"), CONTEXT_LENGTHS)
def test_prompt_lookup_hf(benchmark: Any, tag: Tag, n: int, group: str) -> None:
    """HF's ``PromptLookupCandidateGenerator.get_candidates`` on ``[1, n]``; must match decodekit."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    candidate_generator = pytest.importorskip(
        "transformers.generation.candidate_generator", reason=TRANSFORMERS_SKIP_REASON
    )
    tag(group, "hf_prompt_lookup")
    benchmark.extra_info["torch_num_threads"] = torch.get_num_threads()
    benchmark.extra_info["context_tokens"] = n
    ctx = _context(n)
    generator = candidate_generator.PromptLookupCandidateGenerator(
        eos_token_id=None,
        num_output_tokens=DRAFT_LEN,
        max_matching_ngram_size=MAX_N,
        max_length=n + 1_000_000,  # only caps the total length; far out of reach here
    )
    input_ids = torch.from_numpy(ctx.tokens.astype(np.int64)).unsqueeze(0)
    candidates, logits = benchmark.pedantic(
        lambda: generator.get_candidates(input_ids), rounds=ROUNDS_HF, warmup_rounds=1
    )
    assert logits is None
    assert tuple(candidates.shape) == (1, n + DRAFT_LEN)
    assert torch.equal(candidates[:, :n], input_ids)
    np.testing.assert_array_equal(candidates[0, n:].numpy(), ctx.expected)
    lookup = dk.PromptLookup(min_n=MIN_N, max_n=MAX_N, max_depth=DRAFT_LEN, max_nodes=DRAFT_LEN)
    lookup.extend(ctx.tokens)
    np.testing.assert_array_equal(lookup.propose().tokens[1:], candidates[0, n:].numpy())


def test_vllm_port_agrees_with_brute_force_and_decodekit() -> None:
    """The port's kernel (run by the interpreter, no numba needed) = brute force = decodekit.

    Small vocabularies and short contexts, so matches of every length, overlaps, ties between
    occurrences and too-short contexts all occur.
    """
    rng = np.random.default_rng(30)

    def brute(ctx: IntArray, min_n: int, max_n: int, k: int) -> list[int]:
        tokens = ctx.tolist()
        m = len(tokens)
        for size in range(min(max_n, m - 1), min_n - 1, -1):
            for start in range(m - size):  # occurrences ending before the last token, earliest first
                if tokens[start : start + size] == tokens[m - size :]:
                    return tokens[start + size : start + size + k]
        return []

    for _ in range(400):
        ctx = rng.integers(0, int(rng.integers(2, 6)), size=int(rng.integers(1, 40))).astype(np.int32)
        min_n = int(rng.integers(1, 3))
        max_n = int(rng.integers(min_n, 5))
        k = int(rng.integers(1, 9))
        expected = brute(ctx, min_n, max_n, k)
        assert ngram_propose_python(ctx, min_n, max_n, k).tolist() == expected
        lookup = dk.PromptLookup(min_n=min_n, max_n=max_n, max_depth=k, max_nodes=k)
        lookup.extend(ctx)
        assert lookup.propose().tokens[1:].tolist() == expected


# --- tri-gram table: build -------------------------------------------------------------------------------


def test_trigram_build_decodekit(benchmark: Any, tag: Tag) -> None:
    """``TrigramTable.from_corpus(corpus, top_k=12)`` over 200 x 1,000 tokens."""
    tag("trigram_build", "decodekit")
    corpus = list(_corpus())
    table = benchmark.pedantic(
        lambda: dk.TrigramTable.from_corpus(corpus, top_k=TOP_K), rounds=ROUNDS_BUILD, warmup_rounds=1
    )
    stats = _corpus_stats()
    assert table.num_pairs == len(stats.pair_counts)
    assert table.top_k == TOP_K
    # The top pair keeps its 12 likeliest continuations with their corpus probabilities, best first.
    a, b = stats.top_pair
    tokens, weights = table.lookup(a, b)
    counts = {c: n for (x, y, c), n in stats.trigrams.items() if (x, y) == (a, b)}
    total = stats.pair_counts[(a, b)]
    expected = sorted((n / total for n in counts.values()), reverse=True)[:TOP_K]
    assert len(tokens) == TOP_K
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    np.testing.assert_allclose([counts[int(t)] / total for t in tokens], weights, rtol=1e-6)


@pytest.fixture
def draftretriever_lists() -> list[list[int]]:
    return [seq.tolist() for seq in _corpus()]


def test_trigram_build_draftretriever(
    benchmark: Any, tag: Tag, tmp_path: Path, draftretriever_lists: list[list[int]]
) -> None:
    """draftretriever's ``Writer`` + ``add_entry`` x 200 + ``finalize`` + ``Reader`` on the same corpus."""
    draftretriever = pytest.importorskip("draftretriever", reason=DRAFTRETRIEVER_SKIP_REASON)
    tag("trigram_build", "draftretriever")
    path = str(tmp_path / "trigrams.idx")
    # A writer serializes its table again when it is dropped (to the same file): keep every writer
    # alive until the timing is over and drop them while the directory still exists.
    writers: list[Any] = []

    def build() -> Any:
        writer = draftretriever.Writer(file_path=path, vocab_size=VOCAB)
        for seq in draftretriever_lists:
            writer.add_entry(seq)
        writer.finalize()
        writers.append(writer)
        return draftretriever.Reader(index_file_path=path)

    try:
        reader = benchmark.pedantic(build, rounds=ROUNDS_BUILD, warmup_rounds=1)
    finally:
        writers.clear()
    assert Path(path).stat().st_size > 0
    stats = _corpus_stats()
    _check_draftretriever_search(reader.search(list(stats.top_pair), choices=MAX_NODES), stats)


# --- tri-gram table: propose -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def draftretriever_reader(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A draftretriever ``Reader`` over the corpus (skips when draftretriever is not installed)."""
    draftretriever = pytest.importorskip("draftretriever", reason=DRAFTRETRIEVER_SKIP_REASON)
    path = str(tmp_path_factory.mktemp("draftretriever") / "trigrams.idx")
    writer = draftretriever.Writer(file_path=path, vocab_size=VOCAB)
    for seq in _corpus():
        writer.add_entry(seq.tolist())
    writer.finalize()
    del writer  # drops (and rewrites the file) now, not after the directory is gone
    return draftretriever.Reader(index_file_path=path)


PROPOSE_GROUPS = [
    pytest.param(False, "trigram_propose", id="tree"),
    pytest.param(True, "trigram_propose_buffers", id="buffers"),
]


@pytest.mark.parametrize(("buffers", "group"), PROPOSE_GROUPS)
def test_trigram_propose_decodekit(benchmark: Any, tag: Tag, buffers: bool, group: str) -> None:
    """``propose((a, b), max_nodes=64, iterations=150, rollout_depth=4)``, optionally + the buffers."""
    tag(group, "decodekit")
    stats = _corpus_stats()
    table = _table()
    pair = np.asarray(stats.top_pair, dtype=np.int32)

    def propose() -> tuple[dk.DraftTree, Any]:
        tree = table.propose(
            pair, max_nodes=MAX_NODES, iterations=ITERATIONS, rollout_depth=ROLLOUT_DEPTH, seeds=0
        )
        if not buffers:
            return tree, None
        return tree, (tree.attention_mask(), tree.positions(0), tree.retrieve_indices())

    tree, extra = benchmark.pedantic(propose, rounds=ROUNDS_PROPOSE, warmup_rounds=1)
    benchmark.extra_info["num_nodes"] = tree.num_nodes - 1
    _check_trigram_tree(tree, stats, table)
    if buffers:
        mask, positions, retrieve = extra
        assert mask.shape == (tree.num_nodes, tree.num_nodes)
        np.testing.assert_array_equal(positions, tree.depth)
        assert (retrieve[:, 0] == 0).all()


@pytest.mark.parametrize(("buffers", "group"), PROPOSE_GROUPS)
def test_trigram_propose_draftretriever(
    benchmark: Any, tag: Tag, draftretriever_reader: Any, buffers: bool, group: str
) -> None:
    """``Reader.search([a, b], choices=64)`` (MCTS + paths + Medusa buffers), filed under both groups."""
    tag(group, "draftretriever")
    stats = _corpus_stats()
    # draftretriever aborts the process on a pair it has never seen; this one is the most frequent.
    assert stats.pair_counts[stats.top_pair] > 0
    context = list(stats.top_pair)
    result = benchmark.pedantic(
        lambda: draftretriever_reader.search(context, choices=MAX_NODES),
        rounds=ROUNDS_PROPOSE,
        warmup_rounds=1,
    )
    benchmark.extra_info["num_nodes"] = _check_draftretriever_search(result, stats)
