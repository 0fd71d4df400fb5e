"""Benchmarks of draft-tree buffer construction and tree verification against torch references.

Each ``benchmark.group`` holds one decodekit benchmark (impl ``decodekit``, the report's baseline) and its
reference, so ``bench/report.py`` can print ratios. Every benchmark also checks its output (and the
reference benchmarks check that they agree with decodekit), so ``pytest bench --benchmark-disable``
doubles as a smoke test.

Groups:

* ``buffers_recycling80``: from Token Recycling's static template (80 draft nodes plus the root) to the
  tree buffers. decodekit: ``TreeTemplate.from_paths`` + ``instantiate`` (with an ``[81, 8]`` candidate
  matrix, as Token Recycling reads from its adjacency matrix) + ``attention_mask`` + ``positions`` +
  ``retrieve_indices``. Reference: Medusa's ``generate_medusa_buffers`` on the same paths, which builds
  the attention mask, ``tree_indices``, position ids and retrieve indices. Both start from the list of
  paths; decodekit also fills in the tokens (Medusa does that later, with ``tree_indices``).
* ``buffers_eagle60``: from the parent of each node of a 60-node EAGLE-2 tree to the buffers. decodekit:
  ``DraftTree(tokens, parents)`` + ``attention_mask`` + ``positions`` + ``retrieve_indices``. Reference:
  EAGLE-2's loop (mask rows OR-ed with the parent's row, position ids from row sums, leaf paths walked in
  Python), which produces the same three buffers (its mask as 0/1 float32, decodekit's as bool).
* ``verify_tree_V128k_n64`` and ``verify_tree_V128k_n64_novalidate``: ``verify_tree`` on a 64-node tree
  with a Llama-3-sized vocabulary, ``validate=True`` and ``validate=False`` (each in its own group, so
  that each decodekit variant is its group's baseline), against the same torch rejection-sampling walk.
* ``verify_greedy_B64_n64``: batched greedy verification of 64 trees of 64 nodes against Medusa's
  ``retrieve_indices`` / ``cumprod`` recipe vectorized over the batch.

Issue targets, on the absolute medians: ``verify_tree`` under 50 µs, batched ``verify_greedy`` under
100 µs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

from .reference.tree_buffers import (
    EAGLE2_60_NODE_PARENTS,
    TOKEN_RECYCLING_TEMPLATE,
    eagle2_expand,
    eagle2_tree_buffers,
    medusa_generate_buffers,
)
from .reference.verify import torch_verify_greedy_batched, torch_verify_tree

Tag = Callable[[str, str], None]
IntArray = npt.NDArray[np.int32]

TORCH_SKIP_REASON = "torch is not installed; install the bench extra to run the torch reference benchmarks"
# Llama 3's vocabulary: the size decode-time verifiers see in practice.
VOCAB = 128_256
# Tokens already in the KV cache before the tree (only shifts the position ids).
PREFIX_LEN = 1000
RECYCLING_WIDTH = 8  # Token Recycling's k: candidates per adjacency-matrix row.
VERIFY_NODES = 64
BATCH = 64
# Target logits are 6 * N(0, 1) over the vocabulary: the top token then has probability 0.45 on average
# (0.09 to 0.99 across rows) and ranks 2-4 about 0.12, 0.07, 0.04, a peaked distribution like a real
# target's. (3 * N(0, 1) would leave the top token at 0.07 and nearly every draft rejected at the root.)
TARGET_LOGIT_SCALE = 6.0
# The acceptance rate of the rank-r draft under that target; the 64-node tree is the one that maximizes
# the expected accepted length for these rates (Sequoia / EAGLE-2 style), 7 levels deep and 4 wide.
ACCEPT_RATES = (0.48, 0.12, 0.07, 0.04)

ROUNDS_FAST = 200
# The reference's multinomial draw over 128k tokens alone takes milliseconds, hence its fewer rounds.
ROUNDS_SLOW = 20
ROUNDS_VERIFY_TORCH = 50


# --- inputs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecyclingInputs:
    paths: list[tuple[int, ...]]
    root_token: int
    candidates: IntArray  # [81, 8]: each node's adjacency-matrix row


@cache
def _recycling_inputs() -> RecyclingInputs:
    rng = np.random.default_rng(10)
    candidates = rng.integers(0, VOCAB, size=(len(TOKEN_RECYCLING_TEMPLATE) + 1, RECYCLING_WIDTH))
    return RecyclingInputs(list(TOKEN_RECYCLING_TEMPLATE), 17, candidates.astype(np.int32))


@cache
def _eagle_inputs() -> tuple[IntArray, IntArray]:
    """EAGLE-2's ``draft_tokens`` (random) and the parent array of its 60-node tree."""
    tokens = np.random.default_rng(11).integers(0, VOCAB, size=len(EAGLE2_60_NODE_PARENTS))
    return tokens.astype(np.int32), np.asarray(EAGLE2_60_NODE_PARENTS, dtype=np.int32)


@dataclass(frozen=True)
class VerifyInputs:
    tree: dk.DraftTree
    target_probs: npt.NDArray[np.float32]  # [64, VOCAB]


@cache
def _verify_inputs() -> VerifyInputs:
    """The 64-node tree drafted with the target's own top-k tokens, and the target's rows.

    Node ``i``'s token is candidate ``rank(i)`` of its parent's row, i.e. the parent's
    ``rank(i)``-th most likely token under the target: the drafts are as good as a drafter that ranks
    perfectly, so how deep verification walks depends on the target's confidence alone: 1.2 accepted
    tokens on average (none in 46% of calls, up to 7), so each call reads between 1 and 8 rows.
    """
    logits = np.random.default_rng(12).standard_normal((VERIFY_NODES, VOCAB)) * TARGET_LOGIT_SCALE
    logits -= logits.max(axis=1, keepdims=True)
    probs64 = np.exp(logits)
    probs64 /= probs64.sum(axis=1, keepdims=True)
    probs = probs64.astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    template = dk.TreeTemplate.from_acceptance(np.asarray(ACCEPT_RATES), VERIFY_NODES)
    width = template.num_candidates
    top = np.argpartition(-probs, width, axis=1)[:, :width]
    order = np.argsort(-np.take_along_axis(probs, top, axis=1), axis=1, kind="stable")
    candidates = np.take_along_axis(top, order, axis=1).astype(np.int32)
    tree = template.instantiate(int(np.argmax(probs[0])), candidates)
    return VerifyInputs(tree, probs)


@dataclass(frozen=True)
class GreedyInputs:
    trees: list[dk.DraftTree]
    target_tokens: IntArray  # [BATCH * 64], all trees' nodes concatenated
    expected_accepted: IntArray  # [BATCH]: the planted accepted length of each tree
    expected_next: IntArray  # [BATCH]: the target token after the last planted node


@cache
def _greedy_inputs() -> GreedyInputs:
    """64 trees of the 64-node template with random tokens, each with a planted accepted path.

    Draft tokens come from the lower half of the vocabulary and unplanted target tokens from the upper
    half, so a draft matches its parent's target token only where planted: along one random root path
    of each tree, to a random depth. Sibling tokens are distinct (a stride apart), so the accepted path is
    unique and decodekit and the reference must agree on it.
    """
    rng = np.random.default_rng(13)
    template = dk.TreeTemplate.from_acceptance(np.asarray(ACCEPT_RATES), VERIFY_NODES)
    width = template.num_candidates
    parents = template.parents
    children: list[list[int]] = [[] for _ in range(VERIFY_NODES)]
    for node in range(1, VERIFY_NODES):
        children[parents[node]].append(node)
    half = VOCAB // 2
    trees, targets, accepted, nexts = [], [], [], []
    for _ in range(BATCH):
        starts = rng.integers(0, half, size=(VERIFY_NODES, 1))
        candidates = (starts + np.arange(width) * 9973) % half
        tree = template.instantiate(int(rng.integers(0, half)), candidates.astype(np.int32))
        target = rng.integers(half, VOCAB, size=VERIFY_NODES)
        node, depth = 0, int(rng.integers(0, 8))
        for _ in range(depth):
            if not children[node]:
                break
            child = int(rng.choice(children[node]))
            target[node] = tree.tokens[child]
            node = child
        trees.append(tree)
        targets.append(target)
        accepted.append(int(tree.depth[node]))
        nexts.append(int(target[node]))
    return GreedyInputs(
        trees,
        np.concatenate(targets).astype(np.int32),
        np.asarray(accepted, dtype=np.int32),
        np.asarray(nexts, dtype=np.int32),
    )


# --- checks ----------------------------------------------------------------------------------------------


def _depths(parents: npt.ArrayLike) -> IntArray:
    parent_list = np.asarray(parents).tolist()
    depth = [0] * len(parent_list)
    for node in range(1, len(parent_list)):
        depth[node] = depth[parent_list[node]] + 1
    return np.asarray(depth, dtype=np.int32)


def _check_buffers(
    parents: npt.ArrayLike, mask: npt.NDArray[Any], positions: npt.NDArray[Any], retrieve: npt.NDArray[Any]
) -> None:
    """Ancestor mask, prefix + depth positions, and one padded root-to-leaf path per leaf, in node order."""
    parent_list = np.asarray(parents).tolist()
    n = len(parent_list)
    expected = np.eye(n, dtype=bool)
    for node in range(1, n):
        expected[node] |= expected[parent_list[node]]
    assert mask.shape == (n, n)
    np.testing.assert_array_equal(mask.astype(bool), expected)
    depth = _depths(parent_list)
    np.testing.assert_array_equal(positions, PREFIX_LEN + depth)
    leaves = [node for node in range(n) if node not in set(parent_list)]
    assert retrieve.shape == (len(leaves), depth.max() + 1)
    for row, leaf in zip(retrieve.tolist(), leaves, strict=True):
        path = [node for node in row if node >= 0]
        assert row == path + [-1] * (len(row) - len(path)), "padding must trail the path"
        assert path[0] == 0
        assert path[-1] == leaf
        assert all(parent_list[b] == a for a, b in pairwise(path))


def _check_verification(tree: dk.DraftTree, accepted: list[int], emitted: list[int]) -> None:
    """A root path of accepted nodes, their tokens, then one target token (never a rejected draft)."""
    parents, tokens = tree.parents.tolist(), tree.tokens.tolist()
    assert accepted[0] == 0
    assert all(parents[b] == a for a, b in pairwise(accepted))
    assert len(emitted) == len(accepted)
    assert emitted[:-1] == [tokens[node] for node in accepted[1:]]
    assert 0 <= emitted[-1] < VOCAB
    # Drafts are deterministic: when the walk stops at a node with children they were all rejected, and
    # the recovered token comes from the target with their tokens removed.
    rejected = {tokens[node] for node in range(1, len(parents)) if parents[node] == accepted[-1]}
    assert emitted[-1] not in rejected


# --- buffers: Token Recycling's template (Medusa reference) ----------------------------------------------


def _recycling_decodekit(
    inputs: RecyclingInputs,
) -> tuple[dk.DraftTree, npt.NDArray[np.bool_], IntArray, IntArray]:
    template = dk.TreeTemplate.from_paths(inputs.paths)
    tree = template.instantiate(inputs.root_token, inputs.candidates)
    return tree, tree.attention_mask(), tree.positions(PREFIX_LEN), tree.retrieve_indices()


def test_buffers_recycling80_decodekit(benchmark: Any, tag: Tag) -> None:
    """``from_paths`` + ``instantiate`` + mask, positions and retrieve indices of Token Recycling's tree."""
    tag("buffers_recycling80", "decodekit")
    inputs = _recycling_inputs()
    tree, mask, positions, retrieve = benchmark.pedantic(
        lambda: _recycling_decodekit(inputs), rounds=ROUNDS_FAST, warmup_rounds=1
    )
    assert tree.num_nodes == 81
    assert tree.max_depth == 6
    _check_buffers(tree.parents, mask, positions, retrieve)
    # Node i holds candidate rank(i) of its parent's adjacency-matrix row.
    template = dk.TreeTemplate.from_paths(inputs.paths)
    expected_tokens = inputs.candidates[template.parents[1:], template.ranks[1:]]
    np.testing.assert_array_equal(tree.tokens[1:], expected_tokens)


def test_buffers_recycling80_torch_medusa(benchmark: Any, tag: Tag) -> None:
    """Medusa's ``generate_medusa_buffers`` on the same template; must match decodekit's buffers."""
    pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag("buffers_recycling80", "torch_medusa")
    inputs = _recycling_inputs()
    buffers = benchmark.pedantic(
        lambda: medusa_generate_buffers(inputs.paths), rounds=ROUNDS_SLOW, warmup_rounds=1
    )
    _, mask, positions, retrieve = _recycling_decodekit(inputs)
    np.testing.assert_array_equal(buffers["medusa_attn_mask"][0, 0].numpy().astype(bool), mask)
    np.testing.assert_array_equal(buffers["medusa_position_ids"].numpy() + PREFIX_LEN, positions)
    # Medusa lists the leaves in reverse node order; decodekit in node order.
    np.testing.assert_array_equal(buffers["retrieve_indices"].flip(0).numpy(), retrieve)
    assert buffers["tree_indices"].shape == (81,)


# --- buffers: an EAGLE-2 tree ----------------------------------------------------------------------------


def _eagle_decodekit(
    tokens: IntArray, parents: IntArray
) -> tuple[dk.DraftTree, npt.NDArray[np.bool_], IntArray, IntArray]:
    tree = dk.DraftTree(tokens, parents)
    return tree, tree.attention_mask(), tree.positions(PREFIX_LEN), tree.retrieve_indices()


def test_buffers_eagle60_decodekit(benchmark: Any, tag: Tag) -> None:
    """``DraftTree(tokens, parents)`` + mask, positions and retrieve indices of the 60-node EAGLE-2 tree."""
    tag("buffers_eagle60", "decodekit")
    tokens, parents = _eagle_inputs()
    tree, mask, positions, retrieve = benchmark.pedantic(
        lambda: _eagle_decodekit(tokens, parents), rounds=ROUNDS_FAST, warmup_rounds=1
    )
    assert tree.num_nodes == 60
    np.testing.assert_array_equal(tree.tokens, tokens)
    _check_buffers(parents, mask, positions, retrieve)


def test_buffers_eagle60_torch_eagle2(benchmark: Any, tag: Tag) -> None:
    """EAGLE-2's Python loop over nodes on the same tree; must match decodekit's buffers."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag("buffers_eagle60", "torch_eagle2")
    tokens, parents = _eagle_inputs()
    parents_t = torch.from_numpy(parents.astype(np.int64))
    tree_mask, position_ids, retrieve = benchmark.pedantic(
        lambda: eagle2_tree_buffers(parents_t), rounds=ROUNDS_SLOW, warmup_rounds=1
    )
    _, mask, positions, dk_retrieve = _eagle_decodekit(tokens, parents)
    np.testing.assert_array_equal(tree_mask[0, 0].numpy().astype(bool), mask)
    np.testing.assert_array_equal(position_ids.numpy() + PREFIX_LEN, positions)
    np.testing.assert_array_equal(retrieve.numpy(), dk_retrieve)


# --- verify_tree -----------------------------------------------------------------------------------------

VALIDATE_MODES = [
    pytest.param(True, "verify_tree_V128k_n64", id="validate"),
    pytest.param(False, "verify_tree_V128k_n64_novalidate", id="novalidate"),
]


@pytest.mark.parametrize(("validate", "group"), VALIDATE_MODES)
def test_verify_tree_decodekit(benchmark: Any, tag: Tag, validate: bool, group: str) -> None:
    """``verify_tree`` of the 64-node tree against ``[64, 128256]`` target rows."""
    tag(group, "decodekit")
    benchmark.extra_info["validate"] = validate
    inputs = _verify_inputs()
    rng = dk.Rng(0)
    accepted: list[int] = []

    def verify() -> dk.Verification:
        # Every round walks a fresh random path; the accepted lengths are recorded alongside the times.
        result = dk.verify_tree(inputs.tree, inputs.target_probs, rng=rng, validate=validate)
        accepted.append(result.num_accepted)
        return result

    result = benchmark.pedantic(verify, rounds=ROUNDS_FAST, warmup_rounds=1)
    benchmark.extra_info["mean_accepted"] = float(np.mean(accepted))
    assert result.num_accepted == len(result.accepted_nodes) - 1
    np.testing.assert_array_equal(result.kv_keep, result.accepted_nodes)
    _check_verification(inputs.tree, result.accepted_nodes.tolist(), result.tokens.tolist())


@pytest.mark.parametrize(("validate", "group"), VALIDATE_MODES)
def test_verify_tree_torch(benchmark: Any, tag: Tag, validate: bool, group: str) -> None:
    """The torch rejection-sampling walk on the same inputs (filed under both groups; it never validates)."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag(group, "torch")
    inputs = _verify_inputs()
    parents = torch.from_numpy(inputs.tree.parents.astype(np.int64))
    tokens = torch.from_numpy(inputs.tree.tokens.astype(np.int64))
    probs = torch.from_numpy(inputs.target_probs)
    gen = torch.Generator().manual_seed(0)
    lengths: list[int] = []

    def verify() -> tuple[list[int], list[int]]:
        accepted, emitted = torch_verify_tree(parents, tokens, probs, gen)
        lengths.append(len(accepted) - 1)
        return accepted, emitted

    accepted, emitted = benchmark.pedantic(verify, rounds=ROUNDS_VERIFY_TORCH, warmup_rounds=1)
    benchmark.extra_info["mean_accepted"] = float(np.mean(lengths))
    _check_verification(inputs.tree, accepted, emitted)


def test_verify_tree_inputs_accept_drafts() -> None:
    """The benchmark's tree and target are such that drafts do get accepted, by both implementations."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    inputs = _verify_inputs()
    assert inputs.tree.num_nodes == VERIFY_NODES
    assert inputs.tree.max_depth >= 6
    rng = dk.Rng(1)
    dk_mean = float(
        np.mean([dk.verify_tree(inputs.tree, inputs.target_probs, rng=rng).num_accepted for _ in range(200)])
    )
    gen = torch.Generator().manual_seed(1)
    parents = torch.from_numpy(inputs.tree.parents.astype(np.int64))
    tokens = torch.from_numpy(inputs.tree.tokens.astype(np.int64))
    probs = torch.from_numpy(inputs.target_probs)
    torch_lengths = [len(torch_verify_tree(parents, tokens, probs, gen)[0]) - 1 for _ in range(100)]
    torch_mean = float(np.mean(torch_lengths))
    # Both sample the same accepted-length distribution (mean about 1.24, standard deviation about 1.4),
    # so the two walk equally far on average and the timings compare like with like.
    assert 0.8 < dk_mean < 2.0
    assert abs(dk_mean - torch_mean) < 0.6


# --- verify_greedy ---------------------------------------------------------------------------------------


def test_verify_greedy_decodekit(benchmark: Any, tag: Tag) -> None:
    """``verify_greedy`` of 64 trees of 64 nodes in one call."""
    tag("verify_greedy_B64_n64", "decodekit")
    inputs = _greedy_inputs()
    result = benchmark.pedantic(
        lambda: dk.verify_greedy(inputs.trees, inputs.target_tokens), rounds=ROUNDS_FAST, warmup_rounds=1
    )
    np.testing.assert_array_equal(result.num_accepted, inputs.expected_accepted)
    assert inputs.expected_accepted.max() >= 5, "the planted paths should include deep ones"
    for b, tree in enumerate(inputs.trees):
        one = result[b]
        _check_verification(tree, one.accepted_nodes.tolist(), one.tokens.tolist())
        assert one.tokens[-1] == inputs.expected_next[b]


def test_verify_greedy_torch_medusa(benchmark: Any, tag: Tag) -> None:
    """Medusa's greedy ``evaluate_posterior`` recipe batched over the 64 trees; must match decodekit."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag("verify_greedy_B64_n64", "torch_medusa")
    inputs = _greedy_inputs()
    tokens = torch.from_numpy(np.stack([t.tokens for t in inputs.trees]).astype(np.int64))
    targets = torch.from_numpy(inputs.target_tokens.reshape(BATCH, VERIFY_NODES).astype(np.int64))
    retrieve = torch.from_numpy(np.stack([t.retrieve_indices() for t in inputs.trees]).astype(np.int64))
    accept_length, best_path, next_token = benchmark.pedantic(
        lambda: torch_verify_greedy_batched(tokens, targets, retrieve), rounds=ROUNDS_FAST, warmup_rounds=1
    )
    np.testing.assert_array_equal(accept_length.numpy(), inputs.expected_accepted)
    np.testing.assert_array_equal(next_token.numpy(), inputs.expected_next)
    result = dk.verify_greedy(inputs.trees, inputs.target_tokens)
    for b in range(BATCH):
        a = int(accept_length[b])
        np.testing.assert_array_equal(best_path[b, : a + 1].numpy(), result[b].accepted_nodes)


# --- reference sanity ------------------------------------------------------------------------------------


def test_reference_trees_are_as_documented() -> None:
    """Token Recycling's template has Figure 5's labels; the EAGLE-2 literal is what the expansion gives."""
    labels = np.bincount([path[-1] for path in TOKEN_RECYCLING_TEMPLATE])
    np.testing.assert_array_equal(labels, [41, 13, 8, 5, 4, 3, 3, 3])
    template = dk.TreeTemplate.from_paths(TOKEN_RECYCLING_TEMPLATE)
    assert template.num_nodes == 81
    assert np.bincount(template.depth).tolist() == [1, 8, 21, 25, 15, 8, 3]
    assert list(EAGLE2_60_NODE_PARENTS) == eagle2_expand()
    assert np.bincount(_depths(EAGLE2_60_NODE_PARENTS)).tolist() == [1, 10, 13, 12, 12, 9, 3]


def test_reference_verify_tree_is_lossless_on_first_token() -> None:
    """The torch walk's first emitted token is distributed as the root's target row (small vocabulary)."""
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    # Root with children holding tokens 0 and 1; node 1 has a child with token 2.
    parents = torch.tensor([-1, 0, 0, 1])
    tokens = torch.tensor([5, 0, 1, 2])
    rows = np.array([[0.1, 0.3, 0.2, 0.25, 0.1, 0.05], *[[0.2, 0.1, 0.3, 0.1, 0.2, 0.1]] * 3])
    probs = torch.tensor(rows, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    draws = 4000
    first = [torch_verify_tree(parents, tokens, probs, gen)[1][0] for _ in range(draws)]
    freq = np.bincount(first, minlength=6) / draws
    # Four standard deviations of a frequency near 0.3 over 4000 draws is 0.03.
    np.testing.assert_allclose(freq, rows[0], atol=0.03)
