"""Draft trees, templates and their buffers against plain numpy references."""

from __future__ import annotations

import pickle
import re

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st


@st.composite
def trees(draw: st.DrawFn, max_nodes: int = 256, vocab: int = 50) -> tuple[list[int], list[int]]:
    """Random (tokens, parents) with parents before children; shapes from chains to stars."""
    n = draw(st.integers(1, max_nodes))
    spread = draw(st.sampled_from([1, 2, 4, 1000]))
    parents = [-1] + [draw(st.integers(max(0, i - spread), i - 1)) for i in range(1, n)]
    tokens = draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=n))
    return tokens, parents


@given(trees(), st.integers(0, 40))
def test_buffers_match_reference(tree_arrays: tuple[list[int], list[int]], prefix_len: int) -> None:
    tokens, parents = tree_arrays
    tree = dk.DraftTree(tokens, parents)
    depth = reference.tree_depth(parents)
    assert tree.num_nodes == len(tokens)
    assert tree.max_depth == depth.max()
    np.testing.assert_array_equal(tree.depth, depth)
    np.testing.assert_array_equal(tree.tokens, tokens)
    np.testing.assert_array_equal(tree.leaves, reference.leaves(parents))
    np.testing.assert_array_equal(tree.positions(prefix_len), prefix_len + depth)
    mask = reference.ancestor_mask(parents)
    np.testing.assert_array_equal(tree.attention_mask(), mask)
    np.testing.assert_array_equal(tree.packed_mask(), reference.pack_rows(mask))
    np.testing.assert_array_equal(tree.retrieve_indices(), reference.retrieve_indices(parents))
    first, nxt = tree.first_child_next_sibling()
    want_first, want_next = reference.first_child_next_sibling(parents)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(nxt, want_next)
    additive = tree.attention_mask_with_prefix(prefix_len)
    assert additive.dtype == np.float32
    np.testing.assert_array_equal(additive == 0, reference.prefix_mask(parents, prefix_len))
    assert np.isneginf(additive[additive != 0]).all()


@given(st.lists(trees(max_nodes=40), min_size=1, max_size=6), st.data())
def test_batch_matches_per_tree_buffers(
    arrays: list[tuple[list[int], list[int]]], data: st.DataObject
) -> None:
    batch_trees = [dk.DraftTree(t, p) for t, p in arrays]
    prefix_lens = [data.draw(st.integers(0, 20)) for _ in batch_trees]
    batch = dk.DraftTree.batch(batch_trees, prefix_lens)
    sizes = [t.num_nodes for t in batch_trees]
    np.testing.assert_array_equal(batch.cu_nodes, np.concatenate([[0], np.cumsum(sizes)]))
    width = batch.packed_mask.shape[1]
    assert width == (max(sizes) + 31) // 32
    for b, (tree, prefix) in enumerate(zip(batch_trees, prefix_lens, strict=True)):
        rows = slice(batch.cu_nodes[b], batch.cu_nodes[b + 1])
        np.testing.assert_array_equal(batch.tokens[rows], tree.tokens)
        np.testing.assert_array_equal(batch.positions[rows], tree.positions(prefix))
        packed = tree.packed_mask()
        np.testing.assert_array_equal(batch.packed_mask[rows, : packed.shape[1]], packed)
        assert (batch.packed_mask[rows, packed.shape[1] :] == 0).all()
        mask = batch.custom_mask[batch.cu_custom_mask[b] : batch.cu_custom_mask[b + 1]]
        np.testing.assert_array_equal(
            mask.reshape(tree.num_nodes, prefix + tree.num_nodes), reference.prefix_mask(tree.parents, prefix)
        )


@given(trees(max_nodes=60, vocab=4), st.data())
def test_verify_greedy_equals_brute_force(
    tree_arrays: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    tokens, parents = tree_arrays
    target = data.draw(st.lists(st.integers(0, 3), min_size=len(tokens), max_size=len(tokens)))
    result = dk.verify_greedy(dk.DraftTree(tokens, parents), target)
    path, emitted = reference.greedy_brute_force(tokens, parents, target)
    np.testing.assert_array_equal(result.accepted_nodes, path)
    np.testing.assert_array_equal(result.tokens, emitted)
    np.testing.assert_array_equal(result.kv_keep, path)
    assert result.num_accepted == len(path) - 1


def test_verify_greedy_batch_matches_single() -> None:
    gen = np.random.default_rng(4)
    batch, targets = [], []
    for _ in range(10):
        n = int(gen.integers(1, 30))
        parents = [-1] + [int(gen.integers(0, i)) for i in range(1, n)]
        batch.append(dk.DraftTree(gen.integers(0, 3, n), parents))
        targets.append(gen.integers(0, 3, n))
    result = dk.verify_greedy(batch, np.concatenate(targets))
    assert len(result) == 10
    for b, (tree, target) in enumerate(zip(batch, targets, strict=True)):
        single = dk.verify_greedy(tree, target)
        np.testing.assert_array_equal(result[b].tokens, single.tokens)
        np.testing.assert_array_equal(
            result.tokens[result.cu_tokens[b] : result.cu_tokens[b + 1]], single.tokens
        )
        np.testing.assert_array_equal(
            result.accepted_nodes[result.cu_accepted[b] : result.cu_accepted[b + 1]], single.accepted_nodes
        )
    np.testing.assert_array_equal(result.num_accepted, [result[b].num_accepted for b in range(10)])


def test_constructors() -> None:
    chain = dk.DraftTree.chain(9, [4, 5, 6])
    np.testing.assert_array_equal(chain.tokens, [9, 4, 5, 6])
    np.testing.assert_array_equal(chain.parents, [-1, 0, 1, 2])
    merged = dk.DraftTree.from_paths(1, [[2, 3], [2, 4], [5], [2, 3, 7]])
    np.testing.assert_array_equal(merged.tokens, [1, 2, 5, 3, 4, 7])
    np.testing.assert_array_equal(merged.parents, [-1, 0, 0, 1, 1, 3])
    assert pickle.loads(pickle.dumps(merged)) == merged
    assert len(merged) == 6
    assert dk.DraftTree.from_paths(0, []).num_nodes == 1


def test_out_buffers_are_filled_in_place() -> None:
    tree = dk.DraftTree.from_paths(0, [[1, 2], [3]])
    mask = np.empty((4, 4), dtype=np.bool_)
    assert tree.attention_mask(out=mask) is mask
    packed = np.empty((4, 1), dtype=np.int32)
    assert tree.packed_mask(out=packed) is packed
    pos = np.empty(4, dtype=np.int32)
    assert tree.positions(7, out=pos) is pos
    np.testing.assert_array_equal(pos, [7, 8, 8, 9])
    first, nxt = np.empty(4, np.int32), np.empty(4, np.int32)
    got = tree.first_child_next_sibling(out=(first, nxt))
    assert got[0] is first
    assert got[1] is nxt
    additive = np.empty((4, 6), dtype=np.float16)
    assert tree.attention_mask_with_prefix(2, np.float16, out=additive) is additive
    retrieve = np.empty((2, 3), dtype=np.int32)
    assert tree.retrieve_indices(out=retrieve) is retrieve


def test_templates() -> None:
    # Medusa-style index paths: missing prefixes are added; order by depth, then lexicographic.
    medusa = dk.TreeTemplate.from_paths([(0, 1), (1,), (0,), (0, 0)])
    np.testing.assert_array_equal(medusa.parents, [-1, 0, 0, 1, 1])
    np.testing.assert_array_equal(medusa.ranks, [0, 0, 1, 0, 1])
    assert medusa.num_candidates == 2
    candidates = np.array([[10, 11], [20, 21], [30, 31], [40, 41], [50, 51]])
    tree = medusa.instantiate(7, candidates)
    np.testing.assert_array_equal(tree.tokens, [7, 10, 11, 20, 21])
    balanced = dk.TreeTemplate.balanced(7, 2, 2)
    np.testing.assert_array_equal(balanced.parents, [-1, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(balanced.ranks, [0, 0, 1, 0, 1, 0, 1])
    with pytest.raises(dk.InvalidInputError, match="holds only"):
        dk.TreeTemplate.balanced(8, 2, 2)
    with pytest.raises(dk.InvalidInputError, match="max_nodes"):
        dk.TreeTemplate.from_paths([(0, 0, 0)], max_nodes=3)
    assert pickle.loads(pickle.dumps(medusa)).ranks.tolist() == medusa.ranks.tolist()


def expected_length(template: dk.TreeTemplate, probs: npt.NDArray[np.float64]) -> float:
    value = np.ones(template.num_nodes)
    for i in range(1, template.num_nodes):
        value[i] = value[template.parents[i]] * probs[template.ranks[i]]
    return float(value[1:].sum())


@pytest.mark.parametrize("num_nodes", [2, 5, 12, 30])
def test_acceptance_template_beats_every_other_shape(num_nodes: int) -> None:
    probs = np.array([0.6, 0.25, 0.1, 0.05])
    best = dk.TreeTemplate.from_acceptance(probs, num_nodes)
    assert best.num_nodes == num_nodes
    assert (np.diff(best.depth) >= 0).all(), "numbered breadth-first"
    score = expected_length(best, probs)
    for depth in range(1, num_nodes):
        for branching in range(1, 5):
            try:
                other = dk.TreeTemplate.balanced(num_nodes, depth, branching)
            except dk.InvalidInputError:
                continue
            assert score >= expected_length(other, probs) - 1e-12
    per_depth = dk.TreeTemplate.from_acceptance(np.array([[0.9, 0.05], [0.5, 0.4]]), 5)
    assert per_depth.depth.max() <= 2


@pytest.mark.parametrize(
    ("tokens", "parents", "message"),
    [
        ([1, 2], [0, 0], "parents[0] must be -1"),
        ([1, 2, 3], [-1, 0, -1], "one root"),
        ([1, 2, 3], [-1, 2, 1], "earlier node"),
        ([1, 2], [-1, 5], "earlier node"),
        ([1, -2], [-1, 0], "not a token id"),
        ([1, 2, 3], [-1, 0], "same length"),
        ([], [], "at least the root"),
        ([1, 2**40], [-1, 0], "does not fit in int32"),
        ([1.5, 2.0], [-1, 0], "must hold integers"),
    ],
)
def test_bad_trees_are_refused(tokens: list[float], parents: list[int], message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=re.escape(message)):
        dk.DraftTree(tokens, parents)
