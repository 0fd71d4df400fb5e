"""Keep-masks and softmax against the float64 numpy references, on random, tied and extreme logits."""

from __future__ import annotations

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

NEG_INF = float("-inf")

# Values that produce exact ties, masked tokens and extreme gaps next to ordinary random values.
special = st.sampled_from([NEG_INF, 0.0, 1.0, -1.0, 3.5, 20.0, -30.0])
ordinary = st.floats(-60.0, 60.0, width=32)
element = st.one_of(special, ordinary, ordinary)


@st.composite
def logit_rows(draw: st.DrawFn, max_vocab: int = 80) -> npt.NDArray[np.float32]:
    row = draw(hnp.arrays(np.float32, st.integers(1, max_vocab), elements=element))
    if not np.isfinite(row).any():
        row[draw(st.integers(0, row.size - 1))] = draw(ordinary)
    return row


temperatures = st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5, 4.0])


def assert_between(
    got: npt.NDArray[np.bool_], must: npt.NDArray[np.bool_], may: npt.NDArray[np.bool_]
) -> None:
    missing = np.nonzero(must & ~got)[0]
    extra = np.nonzero(got & ~may)[0]
    assert missing.size == 0, f"tokens {missing} must be kept"
    assert extra.size == 0, f"tokens {extra} must not be kept"


@given(logit_rows(), st.integers(0, 90))
def test_top_k_mask_matches_reference(row: npt.NDArray[np.float32], k: int) -> None:
    np.testing.assert_array_equal(dk.top_k_mask(row, k), reference.top_k_mask(row, k))


@given(logit_rows(), st.one_of(st.sampled_from([1.0, 0.5, 0.9, 1e-6]), st.floats(0.01, 1.0)), temperatures)
def test_top_p_mask_matches_reference(row: npt.NDArray[np.float32], p: float, temperature: float) -> None:
    got = dk.top_p_mask(row, p, temperature=temperature)
    must, may = reference.top_p_bounds(row, p, temperature)
    assert_between(got, must, may)
    assert got[int(np.argmax(row))], "the most probable token is always kept"


@given(logit_rows(), st.one_of(st.sampled_from([0.0, 1.0, 0.1]), st.floats(0.0, 1.0)), temperatures)
def test_min_p_mask_matches_reference(row: npt.NDArray[np.float32], min_p: float, temperature: float) -> None:
    got = dk.min_p_mask(row, min_p, temperature=temperature)
    must, may = reference.min_p_bounds(row, min_p, temperature)
    assert_between(got, must, may)


@given(logit_rows(), temperatures.filter(lambda t: t > 0))
def test_softmax_matches_reference(row: npt.NDArray[np.float32], temperature: float) -> None:
    want = reference.softmax(row, temperature)
    np.testing.assert_allclose(dk.softmax(row, temperature), want, rtol=2e-5, atol=1e-30)
    got_log = dk.log_softmax(row, temperature)
    want_log = reference.log_softmax(row, temperature)
    finite = np.isfinite(want_log)
    np.testing.assert_array_equal(np.isfinite(got_log), finite)
    np.testing.assert_allclose(got_log[finite], want_log[finite], rtol=1e-5, atol=1e-4)


def test_masks_equal_reference_exactly_when_far_from_ties() -> None:
    # Well-separated logits: no rounding ambiguity, so the masks must be identical, row by row.
    gen = np.random.default_rng(5)
    logits = np.stack([gen.permutation(64).astype(np.float32) * 0.25 for _ in range(8)])
    for p in (0.3, 0.6, 0.9, 0.99):
        got = dk.top_p_mask(logits, p)
        for row, mask in zip(logits, got, strict=True):
            np.testing.assert_array_equal(mask, reference.top_p_mask(row, p))
    got = dk.min_p_mask(logits, 0.05, temperature=2.0)
    for row, mask in zip(logits, got, strict=True):
        must, _may = reference.min_p_bounds(row, 0.05, 2.0, rtol=0.0)
        np.testing.assert_array_equal(mask, must)


def test_large_vocabulary_masks() -> None:
    # 128k-wide rows exercise every level of the radix cut-off search and the block-maximum bound.
    gen = np.random.default_rng(11)
    logits = (gen.standard_normal((3, 128_256)) * 3).astype(np.float32)
    logits[1, ::7] = NEG_INF
    logits[2, :1000] = 5.0  # a big tie block
    for row, mask in zip(logits, dk.top_p_mask(logits, 0.9, temperature=0.8), strict=True):
        assert_between(mask, *reference.top_p_bounds(row, 0.9, 0.8))
    for k in (1, 50, 1000, 40_000):
        got = dk.top_k_mask(logits, k)
        for row, mask in zip(logits, got, strict=True):
            np.testing.assert_array_equal(mask, reference.top_k_mask(row, k))


def test_ties_at_cut_offs_are_kept() -> None:
    row = np.array([2.0, 1.0, 1.0, 1.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(dk.top_k_mask(row, 2), [True, True, True, True, False])
    probs = reference.softmax(row)
    # p just above the top token's mass: the crossing token has two twins, all three are kept.
    np.testing.assert_array_equal(dk.top_p_mask(row, probs[0] + 0.01), [True, True, True, True, False])
    np.testing.assert_array_equal(dk.min_p_mask(row, float(np.exp(-1.0))), [True, True, True, True, False])


def test_combined_mask_order() -> None:
    # top-p acts on the distribution renormalized over the top-k survivors.
    row = np.log(np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float64)).astype(np.float32)
    # Over all four, p=0.75 keeps three tokens; over the top-2 renormalized (0.571, 0.429) it keeps both.
    np.testing.assert_array_equal(dk.sampling_mask(row, top_p=0.75), [True, True, True, False])
    np.testing.assert_array_equal(dk.sampling_mask(row, top_k=2, top_p=0.75), [True, True, False, False])
    np.testing.assert_array_equal(dk.sampling_mask(row, top_k=2, top_p=0.5), [True, False, False, False])
    np.testing.assert_array_equal(dk.sampling_mask(row, min_p=0.5), [True, True, True, False])
    np.testing.assert_array_equal(dk.sampling_mask(row, temperature=0.0), [True, False, False, False])


def test_temperature_zero_limits() -> None:
    row = np.array([1.0, 3.0, 3.0, NEG_INF], dtype=np.float32)
    np.testing.assert_array_equal(dk.softmax(row, 0.0), [0.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(dk.log_softmax(row, 0.0), [NEG_INF, -np.log(2), -np.log(2), NEG_INF])
    np.testing.assert_array_equal(dk.top_p_mask(row, 0.5, temperature=0.0), [False, True, True, False])


def test_float16_is_converted() -> None:
    row = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float16)
    np.testing.assert_allclose(dk.softmax(row), reference.softmax(row.astype(np.float32)), rtol=1e-6)


def test_strided_input_and_out_buffers() -> None:
    gen = np.random.default_rng(2)
    wide = gen.standard_normal((4, 100)).astype(np.float32)
    view = wide[:, ::2]  # not contiguous
    out = np.empty((4, 50), dtype=np.float32)
    result = dk.softmax(view, out=out)
    assert result is out
    np.testing.assert_allclose(out, np.stack([reference.softmax(r) for r in view]), rtol=2e-5)
    mask_out = np.empty((4, 50), dtype=np.bool_)
    assert dk.top_k_mask(view, 5, out=mask_out) is mask_out
    assert (mask_out.sum(axis=1) == 5).all()


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 33), (2, 1)])
def test_shapes_are_preserved(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for fn in (dk.softmax, dk.log_softmax):
        assert fn(x).shape == shape
    assert dk.top_k_mask(x, 1).shape == shape
    assert dk.top_p_mask(x, 0.5).dtype == np.bool_


def test_min_p_below_float32_range_still_applies() -> None:
    # Found by hypothesis: min_p = 4.3e-106 is 0 in float32, yet token 0's probability ratio exp(-73 / 0.3)
    # = 1.6e-106 is below it, so token 0 must go.
    row = np.array([-30.0, 43.0], dtype=np.float32)
    np.testing.assert_array_equal(dk.min_p_mask(row, 4.303429390921588e-106, temperature=0.3), [False, True])
    np.testing.assert_array_equal(dk.min_p_mask(row, 1.0e-106, temperature=0.3), [True, True])
    np.testing.assert_array_equal(dk.sampling_mask(row, temperature=0.3, min_p=1e-105), [False, True])
