"""TokenRecycler: the paper's template, the level-by-level fill, updates, warm start, persistence."""

from __future__ import annotations

import pickle

import decodekit as dk
import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

V, K = 12, 3


def test_paper_template_levels() -> None:
    template = dk.TreeTemplate.token_recycling()
    assert template.num_nodes == 81
    assert np.bincount(template.depth).tolist() == [1, 8, 21, 25, 15, 8, 3]
    assert template.num_candidates == 8
    assert dk.TokenRecycler(100).template.num_nodes == 81


@st.composite
def templates(draw: st.DrawFn) -> dk.TreeTemplate:
    n = draw(st.integers(1, 40))
    parents, ranks, used = [-1], [0], {0: set()}
    for i in range(1, n):
        parent = draw(st.integers(0, i - 1))
        free = [r for r in range(K) if r not in used[parent]]
        if not free:
            break
        rank = draw(st.sampled_from(free))
        used[parent].add(rank)
        used[i] = set()
        parents.append(parent)
        ranks.append(rank)
    return dk.TreeTemplate(parents, ranks)


@given(hnp.arrays(np.int32, (V, K), elements=st.integers(-1, V - 1)), templates(), st.integers(0, V - 1))
def test_propose_equals_level_by_level_gather(
    matrix: np.ndarray, template: dk.TreeTemplate, root: int
) -> None:
    recycler = dk.TokenRecycler(V, K, template)
    rows = np.arange(V, dtype=np.int32)
    recycler.update(rows, matrix)
    np.testing.assert_array_equal(recycler.matrix, matrix)
    tree = recycler.propose(root)
    tokens, parents = reference.recycling_propose(
        matrix, template.parents.tolist(), template.ranks.tolist(), root
    )
    assert tree.tokens.tolist() == tokens
    assert tree.parents.tolist() == parents
    assert recycler.propose_batch([root, root]) == [tree, tree]


def test_updates_later_row_wins_and_view_is_read_only() -> None:
    recycler = dk.TokenRecycler(V, K, dk.TreeTemplate.balanced(4, 1, 3))
    view = recycler.matrix
    assert (view == -1).all()
    assert recycler.propose(5).num_nodes == 1, "an empty matrix proposes just the root"
    recycler.update([5, 7, 5], np.array([[1, 2, 3], [4, 4, 4], [9, 8, 7]], dtype=np.int32))
    assert view[5].tolist() == [9, 8, 7], "the later row wins, and the view reflects the update"
    assert recycler.propose(5).tokens.tolist() == [5, 9, 8, 7]
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 3


def test_dropped_slots_prune_subtrees() -> None:
    template = dk.TreeTemplate.from_paths([(0, 0, 0), (1,)])
    recycler = dk.TokenRecycler(V, K, template)
    recycler.update([1, 2], np.array([[2, -1, -1], [-1, 5, 5]], dtype=np.int32))
    tree = recycler.propose(1)
    # Root 1 -> rank 0 gives 2; rank 1 of row 1 is -1 (dropped); 2 -> rank 0 is -1: the chain stops.
    assert tree.tokens.tolist() == [1, 2]


def test_the_loop_truly_recycles() -> None:
    # A synthetic "model" that always continues a fixed cyclic sequence. One warm-up step recycles its
    # top-k at every prompt position (as a prefill scores every prompt token); from then on the drafts are
    # accepted to the template's full depth, and each step's update keeps it that way.
    vocab = 16
    sequence = list(range(1, 11))

    def nxt(t: int) -> int:
        return sequence[(sequence.index(t) + 1) % len(sequence)] if t in sequence else (t + 1) % vocab

    def topk(tokens: list[int]) -> np.ndarray:
        # Best first: the true continuation, then seven other distinct tokens.
        rows = []
        for t in tokens:
            best = nxt(t)
            rows.append([best, *[x for x in range(vocab) if x != best][:7]])
        return np.array(rows, dtype=np.int32)

    template = dk.TreeTemplate.token_recycling()
    recycler = dk.TokenRecycler(vocab, 8, template)
    recycler.update(sequence, topk(sequence))  # warm-up: the prompt's positions
    for step in range(5):
        tree = recycler.propose(sequence[step])
        target = np.array([nxt(t) for t in tree.tokens.tolist()], dtype=np.int32)
        result = dk.verify_greedy(tree, target)
        assert result.num_accepted == template.depth.max()
        recycler.update(tree.tokens, topk(tree.tokens.tolist()))


def test_warm_start_uses_bigram_counts() -> None:
    recycler = dk.TokenRecycler(V, 2, dk.TreeTemplate.balanced(3, 1, 2))
    recycler.warm_start([[1, 2, 1, 3, 1, 2], [4, 5]])
    assert recycler.matrix[1].tolist() == [2, 3]
    assert recycler.matrix[4].tolist() == [5, -1]
    assert recycler.matrix[0].tolist() == [-1, -1]
    # overwrite=False keeps rows already filled (e.g. learned from the model) and fills only empty ones
    recycler.update([1], np.array([[7, 8]], dtype=np.int32))
    recycler.warm_start([[1, 2, 6, 9]], overwrite=False)
    assert recycler.matrix[1].tolist() == [7, 8]
    assert recycler.matrix[6].tolist() == [9, -1]
    recycler.warm_start([[1, 2]])
    assert recycler.matrix[1].tolist() == [2, -1]


def test_persistence_round_trip_and_corruption() -> None:
    recycler = dk.TokenRecycler(20, 2, dk.TreeTemplate.balanced(5, 2, 2))
    recycler.update([3, 4], np.array([[1, 2], [5, 6]], dtype=np.int32))
    data = recycler.to_bytes()
    back = dk.TokenRecycler.from_bytes(data)
    np.testing.assert_array_equal(back.matrix, recycler.matrix)
    assert back.to_bytes() == data
    assert pickle.loads(pickle.dumps(recycler)).propose(3) == recycler.propose(3)
    raw = bytearray(data)
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x81
        with pytest.raises(dk.CorruptStateError):
            dk.TokenRecycler.from_bytes(bytes(bad))
    with pytest.raises(dk.CorruptStateError):
        dk.TokenRecycler.from_bytes(bytes(raw[:-1]))


def test_torch_helper_recycles_top_k() -> None:
    torch = pytest.importorskip(
        "torch", reason="decodekit.torch needs torch (pip install 'decodekit[torch]')"
    )
    from decodekit.torch import recycle

    recycler = dk.TokenRecycler(10, 2, dk.TreeTemplate.balanced(3, 1, 2))
    logits = torch.tensor([[0.0, 5.0, 1.0, 9.0] + [0.0] * 6, [3.0] + [0.0] * 9])
    recycle(recycler, torch.tensor([2, 7]), logits)
    assert recycler.matrix[2].tolist() == [3, 1]
    assert recycler.matrix[7, 0] == 0
    with pytest.raises(dk.InvalidInputError, match="disagrees"):
        recycle(recycler, torch.tensor([2]), logits[:1], k=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dk.TokenRecycler(0), "vocab_size must be"),
        (lambda: dk.TokenRecycler(10, 2), "ranks up to 7"),
        (lambda: dk.TokenRecycler(10, 1, dk.TreeTemplate([-1, *range(70)], [0] * 71)), "at most 64 deep"),
        (lambda: dk.TokenRecycler(10, 2, dk.TreeTemplate.balanced(3, 1, 2)).propose(10), "outside"),
        (
            lambda: dk.TokenRecycler(10, 2, dk.TreeTemplate.balanced(3, 1, 2)).update([1], [[1, 2, 3]]),
            "shape",
        ),
        (
            lambda: dk.TokenRecycler(10, 2, dk.TreeTemplate.balanced(3, 1, 2)).update([1], [[1, 12]]),
            r"topk_ids\[1\] = 12",
        ),
        (
            lambda: dk.TokenRecycler(10, 2, dk.TreeTemplate.balanced(3, 1, 2)).update([-1], [[1, 2]]),
            r"tokens\[0\] = -1",
        ),
    ],
)
def test_bad_input(call: object, message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=message):
        call()  # type: ignore[operator]
