"""NGramStore: counting, ranked proposals, bounded memory, persistence and PromptLookup fallback."""

from __future__ import annotations

import pickle
import threading

import decodekit as dk
import numpy as np
import pytest


def test_proposals_follow_the_most_frequent_continuations() -> None:
    store = dk.NGramStore(max_n=2)
    store.add([1, 2, 3, 1, 2, 3, 1, 2, 4])
    tree = store.propose([9, 1, 2], max_nodes=2, max_depth=1)
    # After (1, 2) the store saw 3 twice and 4 once: both children, 3 first.
    assert tree.tokens.tolist() == [2, 3, 4]
    assert tree.parents.tolist() == [-1, 0, 0]
    chain = store.propose([9, 1, 2], max_nodes=3, max_depth=3)
    assert chain.max_depth <= 3
    assert chain.num_nodes - 1 <= 3
    # An unknown context falls back to shorter ones; a fully unknown one gives the root alone.
    assert store.propose([77, 2], max_nodes=4).tokens[1] == 3
    assert store.propose([77, 78], max_nodes=4).num_nodes == 1


def test_memory_stays_within_capacity() -> None:
    store = dk.NGramStore(max_n=3, capacity_tokens=500)
    gen = np.random.default_rng(0)
    for _ in range(20):
        store.add(gen.integers(0, 300, 400))
        assert len(store) <= 500
    assert len(store) > 0


def test_round_trip_is_exact_and_pickles() -> None:
    store = dk.NGramStore(max_n=3, capacity_tokens=10_000)
    gen = np.random.default_rng(1)
    for _ in range(5):
        store.add(gen.integers(0, 40, 300))
    data = store.to_bytes()
    back = dk.NGramStore.from_bytes(data)
    assert back.to_bytes() == data
    assert len(back) == len(store)
    assert (back.max_n, back.capacity_tokens) == (3, 10_000)
    for context in ([1, 2, 3], [5], [39, 0]):
        assert back.propose(context, 10, 4) == store.propose(context, 10, 4)
    assert pickle.loads(pickle.dumps(store)).to_bytes() == data


def test_every_single_byte_corruption_is_refused() -> None:
    store = dk.NGramStore(max_n=2)
    store.add([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    data = bytearray(store.to_bytes())
    for i in range(len(data)):
        for flip in (0x01, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(dk.CorruptStateError):
                dk.NGramStore.from_bytes(bytes(bad))
    for cut in range(len(data)):
        with pytest.raises(dk.CorruptStateError):
            dk.NGramStore.from_bytes(bytes(data[:cut]))
    with pytest.raises(dk.CorruptStateError, match="magic"):
        dk.NGramStore.from_bytes(b"x" * 64)


def test_concurrent_adds_are_all_counted() -> None:
    store = dk.NGramStore(max_n=1, capacity_tokens=10**6)
    threads = [threading.Thread(target=lambda: [store.add([0, 1]) for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each add counts one (0 -> 1) continuation; the single entry must have seen all 2000.
    assert len(store) == 1
    assert store.propose([0], 1, 1).tokens.tolist() == [0, 1]


def test_prompt_lookup_falls_back_to_the_store() -> None:
    store = dk.NGramStore(max_n=2)
    store.add([10, 11, 12, 13, 14])
    lookup = dk.PromptLookup(2, 3, max_depth=3, max_nodes=3, store=store)
    lookup.extend([5, 6, 10, 11])  # no repeat inside the sequence itself
    assert lookup.propose().tokens.tolist() == [11, 12, 13, 14]
    plain = dk.PromptLookup(2, 3, max_depth=3, max_nodes=3)
    plain.extend([5, 6, 10, 11])
    assert plain.propose().num_nodes == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dk.NGramStore(max_n=0), "max_n must be in 1..=8"),
        (lambda: dk.NGramStore(max_n=9), "max_n must be in 1..=8"),
        (lambda: dk.NGramStore(capacity_tokens=0), "capacity_tokens must be >= 1"),
        (lambda: dk.NGramStore().propose([], 4), "at least one token"),
        (lambda: dk.NGramStore().propose([1], 0), "must be >= 1"),
        (lambda: dk.NGramStore().add([1, -5]), r"tokens\[1\] = -5"),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=message):
        call()  # type: ignore[operator]
