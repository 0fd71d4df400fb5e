"""Losslessness of the verifiers, shown statistically.

A small random "target model" (and a different "draft model") over V tokens is given by conditional
distribution tables for contexts of up to three tokens. For 200,000 seeded runs we draw drafts, verify them
and look at the first two emitted tokens (drawing the second from the target itself when verification
emitted only one). A lossless verifier makes that pair distributed exactly as two steps of sampling from
the target model, ``p(x1) p(x2 | x1)``, which the chi-square test checks at p = 0.001. Medusa's typical
acceptance, a known-lossy rule, must be rejected by the very same test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest
from test_sampling_distribution import ALPHA, chi_square_p

RUNS = 200_000
MAX_CONTEXT = 3


@dataclass
class Model:
    """Next-token tables: ``tables[L]`` has shape ``[V] * L + [V]``."""

    vocab: int
    tables: list[npt.NDArray[np.float64]]

    @classmethod
    def random(cls, vocab: int, seed: int, concentration: float) -> Model:
        gen = np.random.default_rng(seed)
        tables = []
        for length in range(MAX_CONTEXT + 1):
            rows = gen.dirichlet(np.full(vocab, concentration), size=vocab**length)
            tables.append(rows.reshape((vocab,) * length + (vocab,)))
        return cls(vocab, tables)

    def rows(self, contexts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Distributions after each context (``[R, L]`` int array; every row the same length L)."""
        table = self.tables[contexts.shape[1]]
        return (
            table[tuple(contexts.T)]
            if contexts.shape[1]
            else np.broadcast_to(table, (contexts.shape[0], self.vocab))
        )


def draw_without_replacement(
    probs: npt.NDArray[np.float64], count: int, gen: np.random.Generator
) -> npt.NDArray[np.int64]:
    """``count`` distinct tokens per row by the Gumbel-top-k trick (sequential sampling w/o replacement)."""
    keys = np.log(probs) + gen.gumbel(size=probs.shape)
    return np.argsort(-keys, axis=1)[:, :count]


def draw_one(probs: npt.NDArray[np.float64], gen: np.random.Generator) -> npt.NDArray[np.int64]:
    cdf = np.cumsum(probs, axis=1)
    u = gen.random(probs.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1)


def tree_tokens(
    parents: list[int],
    draft: Model,
    gen: np.random.Generator,
    without_replacement: bool,
) -> npt.NDArray[np.int64]:
    """Draft tokens ``[R, n]`` for a fixed tree shape: the children of each node are drawn from the draft
    model's distribution after that node's path (without replacement, or independently)."""
    n = len(parents)
    tokens = np.zeros((RUNS, n), dtype=np.int64)
    paths: list[list[int]] = [[]] + [[] for _ in range(n - 1)]
    for u in range(n):
        kids = [c for c in range(n) if parents[c] == u]
        if not kids:
            continue
        context = tokens[:, paths[u]] if paths[u] else np.zeros((RUNS, 0), dtype=np.int64)
        q = draft.rows(context)
        if without_replacement:
            drawn = draw_without_replacement(q, len(kids), gen)
        else:
            drawn = np.stack([draw_one(q, gen) for _ in kids], axis=1)
        for k, c in enumerate(kids):
            tokens[:, c] = drawn[:, k]
            paths[c] = [*paths[u], c]
    return tokens


def node_rows(parents: list[int], tokens: npt.NDArray[np.int64], model: Model) -> npt.NDArray[np.float32]:
    """The model's distribution after every node of every run, ``[R * n, V]`` (runs concatenated)."""
    n = len(parents)
    out = np.empty((RUNS, n, model.vocab), dtype=np.float32)
    for i in range(n):
        path = []
        j = i
        while j > 0:
            path.append(j)
            j = parents[j]
        context = tokens[:, path[::-1]] if path else np.zeros((RUNS, 0), dtype=np.int64)
        out[:, i] = model.rows(context)
    out /= out.sum(axis=2, keepdims=True)
    return out.reshape(RUNS * n, model.vocab)


def first_two(
    cu: npt.NDArray[np.int32], emitted: npt.NDArray[np.int32], target: Model
) -> Counter[tuple[int, int]]:
    """(x1, x2) per run; runs that emitted one token get x2 from the target model itself."""
    gen = np.random.default_rng(12345)
    first = emitted[cu[:-1]].astype(np.int64)
    counts = np.diff(cu)
    second = np.where(counts >= 2, emitted[np.minimum(cu[:-1] + 1, emitted.size - 1)], -1).astype(np.int64)
    missing = second < 0
    second[missing] = draw_one(target.rows(first[missing, None]), gen)
    return Counter(zip(first.tolist(), second.tolist(), strict=True))


def two_step_distribution(target: Model) -> dict[tuple[int, int], float]:
    p1 = target.tables[0]
    return {
        (a, b): float(p1[a] * target.tables[1][a, b])
        for a in range(target.vocab)
        for b in range(target.vocab)
    }


def random_shape(seed: int, nodes: int = 9, max_depth: int = 3) -> list[int]:
    """A random parent array (parents before children, depth at most ``max_depth``)."""
    gen = np.random.default_rng(seed)
    parents, depth = [-1], [0]
    while len(parents) < nodes:
        parent = int(gen.integers(0, len(parents)))
        if depth[parent] < max_depth:
            parents.append(parent)
            depth.append(depth[parent] + 1)
    return parents


SHAPES = {
    "chain": [-1, 0, 1, 2],
    "tree": [-1, 0, 0, 0, 1, 1, 2, 4],
    "random": random_shape(2024),
}


@pytest.mark.parametrize(
    ("vocab", "shape", "stochastic", "validate"),
    [
        pytest.param(vocab, shape, stochastic, True, id=f"{shape}-V{vocab}-{kind}")
        for vocab in (3, 6)
        for shape in ("chain", "tree", "random")
        for stochastic, kind in ((False, "deterministic-drafts"), (True, "draft-probs"))
    ]
    + [
        # validate=False draws the final token with an early-exit scan: it must be exact too.
        pytest.param(6, "tree", False, False, id="tree-V6-deterministic-drafts-novalidate"),
        pytest.param(6, "tree", True, False, id="tree-V6-draft-probs-novalidate"),
    ],
)
def test_verify_tree_is_lossless(vocab: int, shape: str, stochastic: bool, validate: bool) -> None:
    parents = SHAPES[shape]
    target = Model.random(vocab, seed=vocab * 10 + 1, concentration=0.8)
    draft = Model.random(vocab, seed=vocab * 10 + 2, concentration=0.8)
    gen = np.random.default_rng(vocab + len(parents))
    tokens = tree_tokens(parents, draft, gen, without_replacement=stochastic)
    trees = [dk.DraftTree(row, parents) for row in tokens.tolist()]
    target_rows = node_rows(parents, tokens, target)
    draft_rows = node_rows(parents, tokens, draft) if stochastic else None
    seeds = np.arange(RUNS, dtype=np.uint64)
    result = dk.verify_tree(trees, target_rows, draft_rows, seeds=seeds, validate=validate)
    assert isinstance(result, dk.BatchVerification)
    counts = first_two(result.cu_tokens, result.tokens, target)
    assert chi_square_p(counts, two_step_distribution(target)) > ALPHA
    # The verifier does accept drafts (otherwise it would be lossless trivially, and useless).
    assert result.num_accepted.mean() > 0.1


@pytest.mark.parametrize("stochastic", [False, True], ids=["deterministic-drafts", "draft-probs"])
def test_verify_chain_batch_is_lossless(stochastic: bool) -> None:
    vocab, k = 5, 3
    parents = [-1, 0, 1, 2]
    target = Model.random(vocab, seed=71, concentration=0.6)
    draft = Model.random(vocab, seed=72, concentration=0.6)
    tokens = tree_tokens(parents, draft, np.random.default_rng(3), without_replacement=False)
    rows = node_rows(parents, tokens, target)
    draft_rows = node_rows(parents, tokens, draft).reshape(RUNS, k + 1, vocab)[:, :k].reshape(RUNS * k, vocab)
    out, num = dk.verify_chain_batch(
        tokens[:, 1:].reshape(-1),
        np.arange(0, RUNS * k + 1, k),
        rows,
        draft_rows if stochastic else None,
        seeds=np.arange(RUNS, dtype=np.uint64) + np.uint64(9),
    )
    assert out.shape == (RUNS, k + 1)
    assert ((out >= 0).sum(axis=1) == num).all()
    cu = np.concatenate([[0], np.cumsum(num)]).astype(np.int32)
    counts = first_two(cu, out[out >= 0], target)
    assert chi_square_p(counts, two_step_distribution(target)) > ALPHA
    # One chain through the single-request API gives the same result as its batch row.
    single = dk.verify_chain(
        tokens[7, 1:],
        rows.reshape(RUNS, k + 1, vocab)[7],
        draft_rows.reshape(RUNS, k, vocab)[7] if stochastic else None,
        seeds=16,
    )
    np.testing.assert_array_equal(single.tokens, out[7, : num[7]])


def test_typical_acceptance_is_rejected_as_lossy() -> None:
    vocab = 4
    parents = SHAPES["tree"]
    target = Model.random(vocab, seed=41, concentration=0.8)
    draft = Model.random(vocab, seed=42, concentration=0.8)
    tokens = tree_tokens(parents, draft, np.random.default_rng(5), without_replacement=True)
    rows = node_rows(parents, tokens, target).reshape(RUNS, len(parents), vocab)
    emitted: list[int] = []
    cu = [0]
    for r in range(RUNS // 4):
        v = dk.verify_typical(dk.DraftTree(tokens[r], parents), rows[r])
        emitted.extend(v.tokens.tolist())
        cu.append(len(emitted))
    counts = first_two(np.array(cu), np.array(emitted, dtype=np.int32), target)
    assert chi_square_p(counts, two_step_distribution(target)) < ALPHA
