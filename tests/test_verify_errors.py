"""Bad input to the verifiers and templates raises InvalidInputError naming the problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import decodekit as dk
import numpy as np
import pytest

TREE = dk.DraftTree([0, 1, 2, 3], [-1, 0, 0, 1])
V = 5
UNIFORM = np.full((4, V), 1 / V, dtype=np.float32)


def with_row(row: int, values: list[float]) -> np.ndarray:
    probs = UNIFORM.copy()
    probs[row] = values
    return probs


CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("rows vs nodes", lambda: dk.verify_tree(TREE, UNIFORM[:3], seeds=1), "one row per tree node (4)"),
    ("token outside vocab", lambda: dk.verify_tree(TREE, UNIFORM[:, :3], seeds=1), "outside the vocabulary"),
    ("1-D probs", lambda: dk.verify_tree(TREE, UNIFORM[0], seeds=1), "must be 2-D"),
    (
        "negative prob",
        lambda: dk.verify_tree(TREE, with_row(0, [1.2, -0.2, 0, 0, 0]), seeds=1),
        "target_probs row 0 holds -0.2",
    ),
    (
        "NaN prob",
        lambda: dk.verify_tree(TREE, with_row(0, [np.nan, 0.5, 0.5, 0, 0]), seeds=1),
        "holds NaN at token 0",
    ),
    (
        "row not normalized",
        lambda: dk.verify_tree(TREE, with_row(0, [0.3, 0.3, 0.3, 0, 0]), seeds=1),
        "sums to 0.900000",
    ),
    (
        "draft shape",
        lambda: dk.verify_tree(TREE, UNIFORM, UNIFORM[:, :4], seeds=1),
        "draft_probs must have the shape",
    ),
    (
        "duplicate siblings with draft probs",
        lambda: dk.verify_tree(dk.DraftTree([0, 1, 1], [-1, 0, 0]), UNIFORM[:3], UNIFORM[:3], seeds=1),
        "drawn without replacement",
    ),
    (
        "zero draft probability",
        lambda: dk.verify_tree(
            dk.DraftTree([0, 4], [-1, 0]),
            UNIFORM[:2],
            np.array([[0.5, 0.5, 0, 0, 0]] * 2, np.float32),
            seeds=1,
        ),
        "draft probability 0",
    ),
    ("no randomness", lambda: dk.verify_tree(TREE, UNIFORM), "pass rng="),
    ("not a tree", lambda: dk.verify_tree("tree", UNIFORM, seeds=1), "DraftTree or a list"),  # type: ignore[call-overload]
    (
        "batch seeds",
        lambda: dk.verify_tree([TREE, TREE], np.vstack([UNIFORM, UNIFORM]), seeds=1),
        "one seed per row",
    ),
    (
        "batch rows",
        lambda: dk.verify_tree([TREE, TREE], UNIFORM, seeds=np.arange(2, dtype=np.uint64)),
        "one row per node of all trees (8)",
    ),
    ("greedy length", lambda: dk.verify_greedy(TREE, [1, 2]), "one token per tree node (4)"),
    ("greedy negative", lambda: dk.verify_greedy(TREE, [1, 2, 3, -1]), "target_tokens[3] = -1"),
    ("greedy batch length", lambda: dk.verify_greedy([TREE, TREE], [0] * 5), "(8), got 5"),
    (
        "chain cu start",
        lambda: dk.verify_chain_batch([1], [1, 1], UNIFORM[:2], seeds=np.ones(1, np.uint64)),
        "must start with 0",
    ),
    (
        "chain cu decreasing",
        lambda: dk.verify_chain_batch([1], [0, 1, 0], UNIFORM[:3], seeds=np.ones(2, np.uint64)),
        "non-decreasing",
    ),
    (
        "chain target rows",
        lambda: dk.verify_chain_batch([1, 2], [0, 2], UNIFORM[:2], seeds=np.ones(1, np.uint64)),
        "num_draft_tokens + batch = 3 rows",
    ),
    (
        "chain draft rows",
        lambda: dk.verify_chain([1, 2], UNIFORM[:3], UNIFORM[:3], seeds=1),
        "draft_probs must have shape [num_draft_tokens, vocab] = [2, 5]",
    ),
    ("chain token range", lambda: dk.verify_chain([1, 7], UNIFORM[:3], seeds=1), "draft_tokens[1] = 7"),
    ("typical epsilon", lambda: dk.verify_typical(TREE, UNIFORM, epsilon=-1.0), "epsilon and alpha"),
    ("acceptance range", lambda: dk.TreeTemplate.from_acceptance([1.5, 0.1], 4), "in [0, 1]"),
    ("acceptance depth", lambda: dk.TreeTemplate.from_acceptance([[0.5]], 3), "fewer than num_nodes = 3"),
    ("template rank", lambda: dk.TreeTemplate([-1, 0], [0, -1]), "ranks[1] = -1"),
    ("template siblings", lambda: dk.TreeTemplate([-1, 0, 0], [0, 1, 1]), "distinct ranks"),
    (
        "instantiate width",
        lambda: dk.TreeTemplate([-1, 0], [0, 3]).instantiate(0, np.zeros((2, 2), np.int32)),
        "ranks up to 3",
    ),
    ("batch prefix lens", lambda: dk.DraftTree.batch([TREE], [1, 2]), "one length per tree"),
    ("negative prefix", lambda: TREE.positions(-1), "prefix_len must be"),
    ("mask dtype", lambda: TREE.attention_mask_with_prefix(2, np.int32), "float32, float16 or float64"),
]


@pytest.mark.parametrize(("what", "call", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused(what: str, call: Callable[[], Any], message: str) -> None:
    with pytest.raises(dk.InvalidInputError, match=re.escape(message)):
        call()


def test_validate_false_still_checks_the_row_it_samples_from() -> None:
    chain = dk.DraftTree([0, 1], [-1, 0])
    # Row 0 is only read at token 1 (0.5 is a fine probability), so validate=False trusts it ...
    sloppy = np.array([[0.0, 0.5, 0.0, 0.0, 0.0], [0.2] * 5], dtype=np.float32)
    with pytest.raises(dk.InvalidInputError, match="sums to"):
        dk.verify_tree(chain, sloppy, seeds=3)
    result = dk.verify_tree(chain, sloppy, seeds=3, validate=False)
    assert result.tokens.size in (1, 2)
    # ... but every value scanned while drawing the final token is checked, and a row found to hold too
    # little mass for the draw is checked in full.
    nan_last = np.array([[0.0, 1.0, 0, 0, 0], [np.nan, 0.5, 0.5, 0, 0]], dtype=np.float32)
    with pytest.raises(dk.InvalidInputError, match="target_probs row 1 holds NaN"):
        dk.verify_tree(chain, nan_last, seeds=3, validate=False)
    light_last = np.array([[0.0, 1.0, 0, 0, 0], [0.01, 0.01, 0, 0, 0]], dtype=np.float32)
    with pytest.raises(dk.InvalidInputError, match=re.escape("target_probs row 1 sums to 0.020000")):
        dk.verify_tree(chain, light_last, seeds=3, validate=False)
