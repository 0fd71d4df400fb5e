"""Bad input raises InvalidInputError naming the argument; nothing panics, hangs or passes silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import decodekit as dk
import numpy as np
import pytest

GOOD = np.array([[0.5, 1.0, -1.0, 0.0], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
SEEDS = np.array([1, 2], dtype=np.uint64)
NEG_INF = float("-inf")


def row_with(value: float) -> np.ndarray:
    bad = GOOD.copy()
    bad[1, 2] = value
    return bad


CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("3-D logits", lambda: dk.softmax(np.zeros((2, 2, 2), np.float32)), "logits must be 1-D"),
    ("0-D logits", lambda: dk.top_k_mask(np.float32(1.0), 1), "logits must be 1-D"),
    ("float64 logits", lambda: dk.sample(GOOD.astype(np.float64), seeds=SEEDS), "float32 or float16"),
    ("int logits", lambda: dk.top_p_mask(np.ones(4, np.int32), 0.5), "got dtype"),
    ("empty rows", lambda: dk.sample(np.zeros((2, 0), np.float32), seeds=SEEDS), "empty"),
    ("empty 1-D", lambda: dk.softmax(np.zeros(0, np.float32)), "empty"),
    ("NaN logit", lambda: dk.sample(row_with(float("nan")), seeds=SEEDS), "row 1, index 2"),
    ("+inf logit", lambda: dk.top_p_mask(row_with(float("inf")), 0.9), "inf at row 1"),
    ("all -inf row", lambda: dk.sample(np.full((2, 4), NEG_INF, np.float32), seeds=SEEDS), "all -inf"),
    ("k > finite", lambda: dk.gumbel_top_k(row_with(NEG_INF)[1], 4, seeds=1), "k = 4 is larger"),
    ("negative k", lambda: dk.gumbel_top_k(GOOD, -1, seeds=SEEDS), "k must be >= 0"),
    ("negative top_k", lambda: dk.sample(GOOD, top_k=-2, seeds=SEEDS), "top_k must be >= 0"),
    ("top_p zero", lambda: dk.sample(GOOD, top_p=0.0, seeds=SEEDS), "top_p must be in (0, 1]"),
    ("top_p above one", lambda: dk.top_p_mask(GOOD, 1.5), "top_p must be in (0, 1]"),
    ("top_p NaN", lambda: dk.sample(GOOD, top_p=float("nan"), seeds=SEEDS), "top_p"),
    ("min_p negative", lambda: dk.min_p_mask(GOOD, -0.1), "min_p must be in [0, 1]"),
    ("negative temperature", lambda: dk.sample(GOOD, temperature=-0.5, seeds=SEEDS), "temperature"),
    ("inf temperature", lambda: dk.softmax(GOOD, float("inf")), "temperature"),
    ("tiny temperature", lambda: dk.sample(GOOD, temperature=1e-50, seeds=SEEDS), "use 0 for greedy"),
    ("subnormal temperature", lambda: dk.gumbel_top_k(GOOD, 2, temperature=1e-40, seeds=SEEDS), "too small"),
    ("seeds too short", lambda: dk.sample(GOOD, seeds=SEEDS[:1]), "seeds must have shape (2,)"),
    ("seeds wrong dtype", lambda: dk.sample(GOOD, seeds=SEEDS.astype(np.int64)), "seeds must be a uint64"),
    ("seed int for batch", lambda: dk.sample(GOOD, seeds=3), "one seed per row"),
    ("negative seed", lambda: dk.sample(GOOD[0], seeds=-3), "seeds must be an integer in [0, 2**64)"),
    ("no randomness", lambda: dk.sample(GOOD), "pass rng="),
    ("rng and seeds", lambda: dk.sample(GOOD, rng=dk.Rng(1), seeds=SEEDS), "not both"),
    ("negative Rng seed", lambda: dk.Rng(-1), "seed must be an integer"),
    ("float Rng seed", lambda: dk.Rng(1.5), "seed must be an int"),  # type: ignore[arg-type]
    ("out wrong shape", lambda: dk.softmax(GOOD, out=np.empty((2, 3), np.float32)), "out must have shape"),
    (
        "out wrong dtype",
        lambda: dk.top_k_mask(GOOD, 1, out=np.empty((2, 4), np.float32)),
        "out must have dtype",
    ),
    (
        "beam lengths",
        lambda: dk.stochastic_beam_search_step(np.zeros(3), np.zeros(2), GOOD, 2, dk.Rng(0)),
        "same length",
    ),
    (
        "beam NaN",
        lambda: dk.stochastic_beam_search_step(np.array([0.0, np.nan]), np.zeros(2), GOOD, 2, dk.Rng(0)),
        "beam_log_probs[1]",
    ),
    (
        "beam k too big",
        lambda: dk.stochastic_beam_search_step(np.zeros(2), np.zeros(2), GOOD, 9, dk.Rng(0)),
        "k = 9",
    ),
    (
        "beam 1-D children",
        lambda: dk.stochastic_beam_search_step(np.zeros(1), np.zeros(1), GOOD[0], 1, dk.Rng(0)),
        "2-D",
    ),
]


@pytest.mark.parametrize(("what", "call", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused(what: str, call: Callable[[], Any], message: str) -> None:
    with pytest.raises(dk.InvalidInputError) as info:
        call()
    assert message in str(info.value), f"{what}: {info.value}"


def test_out_may_not_alias_the_input() -> None:
    x = GOOD.copy()
    with pytest.raises(dk.InvalidInputError, match="share memory"):
        dk.softmax(x, out=x)


def test_error_hierarchy() -> None:
    assert issubclass(dk.InvalidInputError, dk.DecodekitError)
    assert issubclass(dk.InvalidInputError, ValueError)
    assert issubclass(dk.GrammarError, ValueError)
    assert issubclass(dk.UnsupportedSchemaError, dk.GrammarError)
    assert issubclass(dk.VocabularyError, dk.DecodekitError)
    assert issubclass(dk.CorruptStateError, ValueError)
    assert issubclass(dk.ResourceLimitError, dk.DecodekitError)
    assert not issubclass(dk.ResourceLimitError, ValueError)
    assert issubclass(dk.KernelUnavailableError, RuntimeError)
    assert dk.DecodekitError.__module__ == "decodekit._core"


def test_bad_input_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="top_p"):
        dk.top_p_mask(GOOD, 2.0)


def test_array_likes_are_accepted() -> None:
    probs = dk.softmax(np.array([0.0, 1.0], dtype=np.float32))
    with pytest.raises(dk.InvalidInputError, match="float64"):
        dk.softmax([0.0, 1.0])  # a list becomes float64: refused with a hint, not silently converted
    assert probs.dtype == np.float32


def test_rust_panic_becomes_decodekit_error() -> None:
    from decodekit import _core

    with pytest.raises(
        dk.DecodekitError, match="internal error in decodekit: a Rust panic: deliberate test panic"
    ):
        _core._panic_for_testing()
