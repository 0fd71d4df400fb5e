"""Exact-distribution tests: 200,000 seeded draws against probabilities computed exactly in float64.

Each test also checks that a deliberately wrong target *is* rejected, so a sampler bug cannot hide
behind a test that is unable to fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest
import reference
from scipy import stats

DRAWS = 200_000
ALPHA = 0.001


def chi_square_p(counts: Mapping[Hashable, int], expected: Mapping[Hashable, float]) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against the probabilities ``expected``.

    Categories with expected count below 5 are pooled so the chi-square approximation holds; an outcome
    with zero expected probability makes the p-value 0.
    """
    n = sum(counts.values())
    if any(expected.get(key, 0.0) == 0.0 for key in counts):
        return 0.0
    observed, wanted = [], []
    pooled_obs, pooled_exp = 0.0, 0.0
    for key, prob in expected.items():
        if prob * n < 5:
            pooled_obs += counts.get(key, 0)
            pooled_exp += prob * n
        else:
            observed.append(counts.get(key, 0))
            wanted.append(prob * n)
    if pooled_exp > 0:
        observed.append(pooled_obs)
        wanted.append(pooled_exp)
    wanted_arr = np.array(wanted)
    wanted_arr *= n / wanted_arr.sum()
    return float(stats.chisquare(np.array(observed, dtype=np.float64), wanted_arr).pvalue)


def as_dist(probs: npt.NDArray[np.float64]) -> dict[Hashable, float]:
    return {i: float(p) for i, p in enumerate(probs)}


SAMPLE_CASES = [
    # (logits, temperature, top_k, top_p, min_p)
    ([1.2, 0.3, -0.5, 2.0, 0.9, -2.0], 1.0, 0, 1.0, 0.0),
    ([1.2, 0.3, -0.5, 2.0, 0.9, -2.0], 0.7, 0, 0.8, 0.0),
    ([1.2, 0.3, -0.5, 2.0, 0.9, -2.0, 0.0, 1.5], 1.3, 5, 0.9, 0.0),
    ([1.2, 0.3, -0.5, 2.0, 0.9, -2.0, 0.0], 0.8, 0, 1.0, 0.1),
    ([0.0, 0.0, 1.0, float("-inf"), 0.5], 2.0, 3, 0.95, 0.2),
]


@pytest.mark.parametrize(("logits", "temperature", "top_k", "top_p", "min_p"), SAMPLE_CASES)
def test_sample_distribution_is_exact(
    logits: list[float], temperature: float, top_k: int, top_p: float, min_p: float
) -> None:
    row = np.array(logits, dtype=np.float32)
    batch = np.broadcast_to(row, (DRAWS, row.size))
    seeds = np.arange(DRAWS, dtype=np.uint64) + np.uint64(1_000_003)
    tokens = dk.sample(batch, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seeds=seeds)
    counts = Counter(tokens.tolist())
    exact = reference.sampling_distribution(row, temperature, top_k, top_p, min_p)
    assert chi_square_p(counts, as_dist(exact)) > ALPHA
    # A slightly wrong target (temperature off by 10%) must be rejected by the same test.
    wrong = reference.sampling_distribution(row, temperature * 1.1, top_k, top_p, min_p)
    assert chi_square_p(counts, as_dist(wrong)) < ALPHA


def test_sample_with_rng_matches_distribution() -> None:
    row = np.array([0.1, 0.4, -0.3, 1.0], dtype=np.float32)
    tokens = dk.sample(np.broadcast_to(row, (DRAWS, 4)), temperature=0.9, rng=dk.Rng(99))
    exact = reference.sampling_distribution(row, 0.9)
    assert chi_square_p(Counter(tokens.tolist()), as_dist(exact)) > ALPHA


@pytest.mark.parametrize(
    ("logits", "k", "temperature"),
    [
        ([0.5, 1.5, -1.0, 0.0, 2.0], 2, 1.0),
        ([0.5, 1.5, -1.0, 0.0, 2.0], 3, 1.0),
        ([0.5, 1.5, -1.0, 0.0, 2.0, -0.5, 1.0], 3, 0.7),
        ([1.0, 1.0, 0.0, float("-inf"), -2.0, 0.3], 2, 1.5),
    ],
)
def test_gumbel_top_k_is_ordered_sampling_without_replacement(
    logits: list[float], k: int, temperature: float
) -> None:
    row = np.array(logits, dtype=np.float32)
    seeds = np.arange(DRAWS, dtype=np.uint64) * np.uint64(7) + np.uint64(3)
    drawn = dk.gumbel_top_k(np.broadcast_to(row, (DRAWS, row.size)), k, temperature=temperature, seeds=seeds)
    assert drawn.shape == (DRAWS, k)
    assert all(len(set(r)) == k for r in drawn[:1000].tolist())
    counts = Counter(map(tuple, drawn.tolist()))
    exact = reference.ordered_without_replacement(reference.softmax(row, temperature), k)
    assert chi_square_p(counts, exact) > ALPHA
    # Wrong target: the same tuples weighted as independent draws *with* replacement, renormalized.
    probs = reference.softmax(row, temperature)
    with_replacement = {t: float(np.prod(probs[list(t)])) for t in exact}
    total = sum(with_replacement.values())
    assert chi_square_p(counts, {t: v / total for t, v in with_replacement.items()}) < ALPHA


def test_beam_search_step_from_one_beam_samples_without_replacement() -> None:
    # From a single beam, the ordered children of one SBS step are a without-replacement sample.
    child = np.log(np.array([[0.35, 0.25, 0.2, 0.12, 0.08]])).astype(np.float32)
    rng = dk.Rng(2024)
    draws = 60_000
    counts: Counter[tuple[int, ...]] = Counter()
    second_scores = np.empty(draws)
    for n in range(draws):
        step = dk.stochastic_beam_search_step(np.zeros(1), np.array([0.25]), child, 3, rng)
        counts[tuple(step.tokens.tolist())] += 1
        assert step.scores[0] == 0.25, "the best child inherits the parent's perturbed score"
        second_scores[n] = step.scores[1]
    exact = reference.ordered_without_replacement(np.exp(child[0].astype(np.float64)), 3)
    assert chi_square_p(counts, exact) > ALPHA
    # The second score against the one the literal truncation algorithm gives (two-sample KS).
    gen = np.random.default_rng(7)
    ref_scores = [
        reference.stochastic_beam_search_step([0.0], [0.25], child, 3, gen)[3][1] for _ in range(20_000)
    ]
    assert stats.ks_2samp(second_scores, ref_scores).pvalue > ALPHA


def test_beam_search_step_matches_truncation_algorithm_across_beams() -> None:
    # Two beams with different scores: compare the joint law of (parent, token) lists with the literal
    # algorithm of Kool et al. by a two-sample chi-square test.
    beam_lp = np.array([-0.4, -1.1])
    beam_g = np.array([0.3, 0.9])
    child = np.log(np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]]) + 1e-300).astype(np.float32)
    child[0, 3] = -np.inf
    draws = 30_000
    rng = dk.Rng(5)
    ours: Counter[tuple[int, ...]] = Counter()
    for _ in range(draws):
        step = dk.stochastic_beam_search_step(beam_lp, beam_g, child, 3, rng)
        ours[tuple(step.parents.tolist()) + tuple(step.tokens.tolist())] += 1
        np.testing.assert_allclose(step.log_probs, beam_lp[step.parents] + child[step.parents, step.tokens])
        assert (np.diff(step.scores) <= 0).all()
    gen = np.random.default_rng(8)
    theirs: Counter[tuple[int, ...]] = Counter()
    for _ in range(draws):
        parents, tokens, _, _ = reference.stochastic_beam_search_step(beam_lp, beam_g, child, 3, gen)
        theirs[tuple(parents) + tuple(tokens)] += 1
    keys = sorted(set(ours) | set(theirs))
    table = np.array([[ours[k] for k in keys], [theirs[k] for k in keys]], dtype=np.float64)
    table = table[:, table.sum(axis=0) >= 10]
    assert stats.chi2_contingency(table).pvalue > ALPHA


def test_greedy_is_argmax_with_lowest_id() -> None:
    row = np.array([0.0, 2.0, 2.0, 1.0], dtype=np.float32)
    assert dk.sample(row, temperature=0.0) == 1
    np.testing.assert_array_equal(dk.gumbel_top_k(row, 3, temperature=0.0), [1, 2, 3])


def test_gumbel_top_k_switches_to_noise_exactly_on_widely_spread_rows() -> None:
    # Seven tokens 100 nats apart force repeated rebasing, after which the sampler finishes the draw
    # with explicit Gumbel noise; the last three draws then come from the cluster of four near -700 and
    # must follow ordered sampling without replacement within it.
    cluster = [-700.0, -700.5, -701.0, -699.2]
    row = np.array([-100.0 * i for i in range(7)] + cluster, dtype=np.float32)
    seeds = np.arange(DRAWS, dtype=np.uint64) + np.uint64(77)
    drawn = dk.gumbel_top_k(np.broadcast_to(row, (DRAWS, row.size)), 10, seeds=seeds)
    assert (drawn[:, :7] == np.arange(7)).all()
    counts = Counter(map(tuple, (drawn[:, 7:] - 7).tolist()))
    exact = reference.ordered_without_replacement(reference.softmax(np.array(cluster)), 3)
    assert chi_square_p(counts, exact) > ALPHA
    probs = reference.softmax(np.array(cluster))
    independent = {t: float(np.prod(probs[list(t)])) for t in exact}
    total = sum(independent.values())
    assert chi_square_p(counts, {t: v / total for t, v in independent.items()}) < ALPHA
