"""Benchmarks of Token Recycling's per-step host work against a torch re-implementation of the reference.

Each ``benchmark.group`` holds one decodekit benchmark (impl ``decodekit``, the report's baseline) and the
reference (impl ``torch_reference``, see ``bench/reference/token_recycling.py``). Every benchmark checks
its output, and the reference benchmarks check that they agree with decodekit, so
``pytest bench --benchmark-disable`` doubles as a smoke test.

Groups (V = 32000, k = 8, the paper's 80-node template, a matrix pre-filled with random valid ids so that
every tree is full, 81 nodes with the root):

* ``recycling_step``: one step's host work. decodekit: ``update`` of 81 scored tokens with their
  ``[81, 8]`` top-k, ``propose(root)``, ``packed_mask()`` and ``positions(prefix_len)``. Reference: the
  same update as an ``index_put`` on an int64 ``[V, 8]`` tensor, one gather per tree level, and a
  freshly filled ``[81, 81]`` bool mask plus position ids. The update writes the same rows every round,
  so every round drafts the same tree and the outputs can be compared after timing.
* ``recycling_propose_batch64``: ``propose_batch`` of 64 roots against the level-by-level gather batched
  over the 64 roots (one gather per level over ``[64, nodes_in_level]``).

Issue targets, on the absolute medians: a step under 10 µs and at least 30x faster than the reference;
``propose_batch(64)`` under 100 µs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

from .reference.tree_buffers import TOKEN_RECYCLING_TEMPLATE

Tag = Callable[[str, str], None]
IntArray = npt.NDArray[np.int32]

TORCH_SKIP_REASON = "torch is not installed; install the bench extra to run the torch reference benchmarks"
VOCAB = 32_000  # Vicuna / Llama 2, the paper's models
K = 8
NUM_NODES = 81
PREFIX_LEN = 1000
BATCH = 64
ROUNDS_FAST = 2000
ROUNDS_SLOW = 200


@dataclass(frozen=True)
class StepInputs:
    initial: IntArray  # [V, K]: the pre-filled matrix
    scored_tokens: IntArray  # [81]: distinct tokens (the root among them) whose rows the step recycles
    scored_topk: IntArray  # [81, K]
    root: int
    roots: IntArray  # [BATCH]


@cache
def _inputs() -> StepInputs:
    rng = np.random.default_rng(20)
    initial = rng.integers(0, VOCAB, size=(VOCAB, K)).astype(np.int32)
    scored = rng.choice(VOCAB, size=NUM_NODES, replace=False).astype(np.int32)
    topk = rng.integers(0, VOCAB, size=(NUM_NODES, K)).astype(np.int32)
    roots = rng.integers(0, VOCAB, size=BATCH).astype(np.int32)
    return StepInputs(initial, scored, topk, int(scored[0]), roots)


def _recycler(inputs: StepInputs) -> dk.TokenRecycler:
    rec = dk.TokenRecycler(VOCAB, k=K)
    rec.update(np.arange(VOCAB, dtype=np.int32), inputs.initial)
    return rec


def _expected_matrix(inputs: StepInputs) -> IntArray:
    matrix = inputs.initial.copy()
    matrix[inputs.scored_tokens] = inputs.scored_topk
    return matrix


def _expected_tokens(matrix: IntArray, roots: IntArray) -> IntArray:
    """Breadth-first fill of the template, in numpy: node (parent p, rank r) takes matrix[token(p), r]."""
    template = dk.TreeTemplate.token_recycling()
    parents, ranks = template.parents, template.ranks
    tokens = np.empty((len(roots), NUM_NODES), dtype=np.int32)
    tokens[:, 0] = roots
    for node in range(1, NUM_NODES):
        tokens[:, node] = matrix[tokens[:, parents[node]], ranks[node]]
    return tokens


def _ancestor_mask() -> npt.NDArray[np.bool_]:
    parents = dk.TreeTemplate.token_recycling().parents
    mask = np.eye(NUM_NODES, dtype=bool)
    for node in range(1, NUM_NODES):
        mask[node] |= mask[parents[node]]
    return mask


def _unpack(packed: IntArray, n: int) -> npt.NDArray[np.bool_]:
    """decodekit's packed mask: bit ``j % 32`` of word ``j // 32`` of row ``i`` says whether i sees j."""
    bits = (packed.view(np.uint32)[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    unpacked: npt.NDArray[np.bool_] = bits.reshape(packed.shape[0], -1)[:, :n].astype(bool)
    return unpacked


def _decodekit_step(
    rec: dk.TokenRecycler, inputs: StepInputs
) -> tuple[dk.DraftTree, IntArray, npt.NDArray[np.int64]]:
    rec.update(inputs.scored_tokens, inputs.scored_topk)
    tree = rec.propose(inputs.root)
    return tree, tree.packed_mask(), tree.positions(PREFIX_LEN)


def _template_index() -> Any:
    from .reference.token_recycling import build_template_index

    return build_template_index(list(TOKEN_RECYCLING_TEMPLATE))


# --- recycling_step --------------------------------------------------------------------------------------


def test_recycling_step_decodekit(benchmark: Any, tag: Tag) -> None:
    """``update`` (81 rows) + ``propose`` + ``packed_mask`` + ``positions`` on a full 32000 x 8 matrix."""
    tag("recycling_step", "decodekit")
    inputs = _inputs()
    rec = _recycler(inputs)
    tree, packed, positions = benchmark.pedantic(
        lambda: _decodekit_step(rec, inputs), rounds=ROUNDS_FAST, warmup_rounds=10
    )
    assert tree.num_nodes == NUM_NODES
    expected = _expected_tokens(_expected_matrix(inputs), np.asarray([inputs.root], dtype=np.int32))[0]
    np.testing.assert_array_equal(tree.tokens, expected)
    np.testing.assert_array_equal(rec.matrix, _expected_matrix(inputs))
    np.testing.assert_array_equal(_unpack(packed, NUM_NODES), _ancestor_mask())
    np.testing.assert_array_equal(positions, PREFIX_LEN + dk.TreeTemplate.token_recycling().depth)


def test_recycling_step_torch_reference(benchmark: Any, tag: Tag) -> None:
    """The torch step (index_put update, one gather per level, fresh bool mask); must match decodekit."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    from .reference.token_recycling import step

    tag("recycling_step", "torch_reference")
    inputs = _inputs()
    index = _template_index()
    matrix = torch.from_numpy(inputs.initial.astype(np.int64))
    scored = torch.from_numpy(inputs.scored_tokens.astype(np.int64))
    topk = torch.from_numpy(inputs.scored_topk.astype(np.int64))
    tokens, mask, positions = benchmark.pedantic(
        lambda: step(matrix, scored, topk, inputs.root, index, PREFIX_LEN),
        rounds=ROUNDS_SLOW,
        warmup_rounds=5,
    )
    tree, packed, dk_positions = _decodekit_step(_recycler(inputs), inputs)
    assert tree.num_nodes == NUM_NODES
    np.testing.assert_array_equal(tokens.numpy(), tree.tokens)
    np.testing.assert_array_equal(mask.numpy(), _unpack(packed, NUM_NODES))
    np.testing.assert_array_equal(positions.numpy(), dk_positions)
    np.testing.assert_array_equal(matrix.numpy(), _expected_matrix(inputs))


# --- recycling_propose_batch64 ---------------------------------------------------------------------------


def test_recycling_propose_batch64_decodekit(benchmark: Any, tag: Tag) -> None:
    """``propose_batch`` of 64 roots on the full matrix."""
    tag("recycling_propose_batch64", "decodekit")
    inputs = _inputs()
    rec = _recycler(inputs)
    trees = benchmark.pedantic(lambda: rec.propose_batch(inputs.roots), rounds=ROUNDS_FAST, warmup_rounds=10)
    assert len(trees) == BATCH
    assert all(tree.num_nodes == NUM_NODES for tree in trees)
    expected = _expected_tokens(inputs.initial, inputs.roots)
    np.testing.assert_array_equal(np.stack([tree.tokens for tree in trees]), expected)


def test_recycling_propose_batch64_torch_reference(benchmark: Any, tag: Tag) -> None:
    """The level-by-level gather batched over the 64 roots; must match decodekit's trees."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    from .reference.token_recycling import draft_batch

    tag("recycling_propose_batch64", "torch_reference")
    inputs = _inputs()
    index = _template_index()
    matrix = torch.from_numpy(inputs.initial.astype(np.int64))
    roots = torch.from_numpy(inputs.roots.astype(np.int64))
    tokens = benchmark.pedantic(
        lambda: draft_batch(matrix, roots, index), rounds=ROUNDS_SLOW, warmup_rounds=5
    )
    trees = _recycler(inputs).propose_batch(inputs.roots)
    assert tokens.shape == (BATCH, NUM_NODES)
    np.testing.assert_array_equal(tokens.numpy(), np.stack([tree.tokens for tree in trees]))
