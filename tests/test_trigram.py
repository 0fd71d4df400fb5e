"""TrigramTable (ADED): corpus statistics, online adaptation, MCTS proposals and persistence."""

from __future__ import annotations

import pickle
from collections import Counter, defaultdict

import decodekit as dk
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

corpora = st.lists(st.lists(st.integers(0, 6), min_size=3, max_size=60), min_size=1, max_size=5)


def reference_table(corpus: list[list[int]], top_k: int) -> dict[tuple[int, int], list[tuple[int, float]]]:
    counts: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
    for seq in corpus:
        for a, b, c in zip(seq, seq[1:], seq[2:], strict=False):
            counts[(a, b)][c] += 1
    table = {}
    for key, next_counts in counts.items():
        total = sum(next_counts.values())
        ranked = sorted(next_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        table[key] = [(tok, count / total) for tok, count in ranked]
    return table


@given(corpora, st.integers(1, 4))
def test_corpus_statistics_match_counting(corpus: list[list[int]], top_k: int) -> None:
    table = dk.TrigramTable.from_corpus(corpus, top_k=top_k)
    want = reference_table(corpus, top_k)
    assert table.num_pairs == len(want)
    for (a, b), entries in want.items():
        tokens, weights = table.lookup(a, b)
        assert tokens.tolist() == [t for t, _ in entries]
        np.testing.assert_allclose(weights, [w for _, w in entries], rtol=1e-6)


def reference_adapt(table: dict[tuple[int, int], list[list[float]]], tokens: list[int], top_k: int) -> None:
    for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
        entry = table.setdefault((a, b), [])
        hit = [e for e in entry if e[0] == c]
        if hit:
            hit[0][1] = min(np.float32(hit[0][1]) + np.float32(0.04), np.float32(3.0))
        elif len(entry) < top_k:
            entry.append([c, np.float32(0.04)])
        else:
            low = min(range(len(entry)), key=lambda i: (entry[i][1], -i))
            if entry[low][1] < np.float32(0.04):
                entry[low] = [c, np.float32(0.04)]
        entry.sort(key=lambda e: (-e[1], e[0]))


@given(corpora, st.lists(st.integers(0, 8), min_size=3, max_size=200), st.integers(1, 3))
def test_adaptation_follows_the_rule(corpus: list[list[int]], stream: list[int], top_k: int) -> None:
    table = dk.TrigramTable.from_corpus(corpus, top_k=top_k)
    mirror = {
        key: [[t, np.float32(w)] for t, w in entries]
        for key, entries in reference_table(corpus, top_k).items()
    }
    table.adapt(stream)
    reference_adapt(mirror, stream, top_k)
    for (a, b), entry in mirror.items():
        tokens, weights = table.lookup(a, b)
        assert tokens.tolist() == [int(e[0]) for e in entry]
        np.testing.assert_allclose(weights, [float(e[1]) for e in entry], rtol=1e-6)


def test_weights_are_capped() -> None:
    table = dk.TrigramTable.from_corpus([[1, 2, 3]], top_k=2)
    table.adapt([1, 2, 3] * 1)
    for _ in range(100):
        table.adapt([1, 2, 3])
    assert table.lookup(1, 2)[1][0] == pytest.approx(3.0)


def small_table() -> dk.TrigramTable:
    gen = np.random.default_rng(0)
    corpus = [gen.integers(0, 30, 400) for _ in range(5)]
    return dk.TrigramTable.from_corpus(corpus, top_k=6)


@pytest.mark.parametrize(("max_nodes", "iterations"), [(1, 10), (8, 50), (64, 150), (200, 400)])
def test_search_respects_budgets_and_the_table(max_nodes: int, iterations: int) -> None:
    table = small_table()
    tree = table.propose((3, 7), max_nodes=max_nodes, iterations=iterations, rollout_depth=4, seeds=11)
    assert tree.tokens[0] == 7
    assert tree.num_nodes - 1 <= min(max_nodes, iterations)
    # Every edge is a continuation the table lists for the (previous, current) pair.
    context = {0: (3, 7)}
    for node in range(1, tree.num_nodes):
        parent = int(tree.parents[node])
        prev, cur = context[parent]
        allowed = table.lookup(prev, cur)[0].tolist()
        assert int(tree.tokens[node]) in allowed
        context[node] = (cur, int(tree.tokens[node]))


def test_search_is_deterministic_for_a_seed() -> None:
    table = small_table()
    a = table.propose((3, 7), seeds=5)
    assert table.propose((3, 7), seeds=5) == a
    assert table.propose((3, 7), rng=dk.Rng(1)) == table.propose((3, 7), rng=dk.Rng(1))
    # With no entry for the pair the tree is the root alone.
    assert table.propose((999, 998), seeds=1).num_nodes == 1


def test_round_trip_and_corruption() -> None:
    table = dk.TrigramTable.from_corpus([[1, 2, 3, 1, 2, 4, 2, 3, 1]], top_k=3)
    table.adapt([2, 3, 1, 2, 3])
    data = table.to_bytes()
    back = dk.TrigramTable.from_bytes(data)
    assert back.to_bytes() == data
    assert pickle.loads(pickle.dumps(table)).to_bytes() == data
    assert back.propose((1, 2), seeds=3) == table.propose((1, 2), seeds=3)
    raw = bytearray(data)
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x5A
        with pytest.raises(dk.CorruptStateError):
            dk.TrigramTable.from_bytes(bytes(bad))
    for cut in range(len(raw)):
        with pytest.raises(dk.CorruptStateError):
            dk.TrigramTable.from_bytes(bytes(raw[:cut]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dk.TrigramTable.from_corpus([[1, 2]]), "no trigram"),
        (lambda: dk.TrigramTable.from_corpus([]), "no trigram"),
        (lambda: dk.TrigramTable.from_corpus([[1, 2, 3]], top_k=0), "top_k must be in 1..=255"),
        (lambda: dk.TrigramTable.from_corpus([[1, -2, 3]]), r"corpus\[0\]\[1\] = -2"),
        (lambda: dk.TrigramTable.from_corpus([[1, 2, 30]], vocab_size=10), "outside the vocabulary"),
        (lambda: small_table().propose((1, 2), max_nodes=0, seeds=1), "must be >= 1"),
        (lambda: small_table().propose((1, 2), iterations=0, seeds=1), "must be >= 1"),
        (lambda: small_table().propose((1, 2, 3), seeds=1), "exactly two tokens"),
        (lambda: small_table().propose((1, 2)), "pass rng="),
        (lambda: small_table().propose((1, 2), c_puct=-1.0, seeds=1), "c_puct"),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=message):
        call()  # type: ignore[operator]
