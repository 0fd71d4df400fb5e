"""PromptLookup against vLLM's algorithm and a brute-force reference; incremental equals rebuilt."""

from __future__ import annotations

import decodekit as dk
import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

# Small alphabets make repeats (and so matches) common.
streams = st.lists(st.integers(0, 5), min_size=1, max_size=120)
configs = st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(1, 10)).map(
    lambda t: (t[0], t[0] + t[1], t[2])
)


def chain_tokens(tree: dk.DraftTree) -> list[int]:
    assert (tree.parents == np.arange(-1, tree.num_nodes - 1)).all(), "a chain"
    return tree.tokens[1:].tolist()


@given(streams, configs)
def test_chain_matches_vllm_and_brute_force(tokens: list[int], config: tuple[int, int, int]) -> None:
    min_n, max_n, k = config
    lookup = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=k)
    lookup.extend(tokens)
    got = chain_tokens(lookup.propose())
    assert got == reference.vllm_ngram_propose(tokens, min_n, max_n, k)
    assert got == reference.brute_force_ngram_propose(tokens, min_n, max_n, k)
    assert lookup.propose().tokens[0] == tokens[-1]


@given(streams, configs)
def test_latest_and_match_length_match_brute_force(tokens: list[int], config: tuple[int, int, int]) -> None:
    min_n, max_n, k = config
    for latest in (False, True):
        lookup = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=k, latest=latest)
        lookup.extend(tokens)
        n, continuation = reference.brute_force_ngram_match(tokens, min_n, max_n, k, latest=latest)
        assert lookup.match_length() == n
        assert chain_tokens(lookup.propose()) == continuation


@given(streams, configs, st.lists(st.integers(1, 7), min_size=1, max_size=40))
def test_incremental_equals_rebuilt(
    tokens: list[int], config: tuple[int, int, int], chunks: list[int]
) -> None:
    min_n, max_n, k = config
    step = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=2 * k)
    at = 0
    for size in chunks:
        if at >= len(tokens):
            break
        step.extend(tokens[at : at + size])
        at = min(at + size, len(tokens))
        rebuilt = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=2 * k)
        rebuilt.extend(tokens[:at])
        assert step.propose() == rebuilt.propose()


@given(streams, streams, configs)
def test_rollback_then_extend_equals_never_extended(
    prefix: list[int], extra: list[int], config: tuple[int, int, int]
) -> None:
    min_n, max_n, k = config
    lookup = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=3 * k)
    lookup.extend(prefix)
    before = lookup.propose()
    lookup.extend(extra)
    lookup.rollback(len(extra))
    assert lookup.propose() == before
    np.testing.assert_array_equal(lookup.tokens, prefix)
    lookup.extend(extra)
    fresh = dk.PromptLookup(min_n, max_n, max_depth=k, max_nodes=3 * k)
    fresh.extend(prefix + extra)
    assert lookup.propose() == fresh.propose()


def reference_tree(
    tokens: list[int], min_n: int, max_n: int, depth: int, nodes: int
) -> dict[tuple[int, ...], int]:
    """Root paths of the ranked tree, built by brute force: the continuations of the (up to 64) most recent
    occurrences of the longest match, counted per trie node, chosen best-first by (count, recency)."""
    total = len(tokens)
    for n in range(max_n, min_n - 1, -1):
        if total < n + 1:
            continue
        starts = [s for s in range(total - n) if tokens[s : s + n] == tokens[total - n :]]
        if starts:
            break
    else:
        return {}
    count: dict[tuple[int, ...], int] = {}
    recency: dict[tuple[int, ...], int] = {}
    for s in starts[-64:]:
        cont = tokens[s + n : s + n + depth]
        for length in range(1, len(cont) + 1):
            path = tuple(cont[:length])
            count[path] = count.get(path, 0) + 1
            recency[path] = max(recency.get(path, -1), s)
    chosen: dict[tuple[int, ...], int] = {}
    frontier = {p for p in count if len(p) == 1}
    while frontier and len(chosen) < nodes:
        best = max(frontier, key=lambda p: (count[p], recency[p]))
        frontier.remove(best)
        chosen[best] = len(chosen)
        frontier |= {p for p in count if len(p) == len(best) + 1 and p[:-1] == best}
    return chosen


def tree_paths(tree: dk.DraftTree) -> set[tuple[int, ...]]:
    paths = set()
    for node in range(1, tree.num_nodes):
        path = []
        j = node
        while j > 0:
            path.append(int(tree.tokens[j]))
            j = int(tree.parents[j])
        paths.add(tuple(path[::-1]))
    return paths


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=150),
    st.integers(1, 3),
    st.integers(2, 6),
    st.integers(1, 20),
)
def test_tree_mode_matches_brute_force(tokens: list[int], min_n: int, depth: int, extra_nodes: int) -> None:
    nodes = depth + extra_nodes
    lookup = dk.PromptLookup(min_n, min_n + 1, max_depth=depth, max_nodes=nodes)
    lookup.extend(tokens)
    tree = lookup.propose()
    assert tree.num_nodes - 1 <= nodes
    assert tree.max_depth <= depth
    want = reference_tree(tokens, min_n, min_n + 1, depth, nodes)
    assert tree_paths(tree) == set(want)


def test_batch_equals_single() -> None:
    gen = np.random.default_rng(0)
    lookups = []
    for _ in range(8):
        lookup = dk.PromptLookup(2, 4, max_depth=6, max_nodes=12)
        lookup.extend(gen.integers(0, 20, 400))
        lookups.append(lookup)
    batch = dk.PromptLookup.propose_batch(lookups)
    assert batch == [lookup.propose() for lookup in lookups]


def test_planted_repeat_is_found_in_a_long_context() -> None:
    gen = np.random.default_rng(1)
    noise = gen.integers(1000, 50_000, 20_000).tolist()
    planted = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    lookup = dk.PromptLookup(1, 4, max_depth=8, max_nodes=8)
    lookup.extend(noise[:5000] + planted + noise[5000:] + planted[:3])
    assert chain_tokens(lookup.propose()) == planted[3:] + noise[5000:5001]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_n": 3, "max_n": 2}, "1 <= min_n <= max_n"),
        ({"min_n": 0}, "1 <= min_n <= max_n"),
        ({"max_n": 9}, "at most 8"),
        ({"max_depth": 0}, "must be >= 1"),
        ({"max_nodes": 0}, "must be >= 1"),
        ({"vocab_size": 0}, "vocab_size must be >= 1"),
    ],
)
def test_bad_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=message):
        dk.PromptLookup(**kwargs)


def test_bad_use() -> None:
    lookup = dk.PromptLookup(vocab_size=10)
    with pytest.raises(dk.InvalidInputError, match="empty"):
        lookup.propose()
    with pytest.raises(dk.InvalidInputError, match=r"tokens\[1\] = -1"):
        lookup.extend([1, -1])
    with pytest.raises(dk.InvalidInputError, match="outside the vocabulary"):
        lookup.extend([3, 10])
    assert len(lookup) == 0, "a refused extend adds nothing"
    lookup.extend([1, 2])
    with pytest.raises(dk.InvalidInputError, match="cannot roll back 3"):
        lookup.rollback(3)
    lookup.reset()
    assert len(lookup) == 0
