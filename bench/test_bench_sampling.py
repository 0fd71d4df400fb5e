"""Benchmarks of decodekit's samplers against the torch and numpy references.

Each ``benchmark.group`` holds one decodekit benchmark and its references, so ``bench/report.py`` can turn
the medians into ratios. Every benchmark also checks its output, so ``pytest bench --benchmark-disable``
doubles as a smoke test. The reference benchmarks at B=64 take up to a second per call on a small machine,
hence their few rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

from .reference.samplers import numpy_top_p_sample, torch_gumbel_top_k, torch_top_p_sample, torch_topk_only

if TYPE_CHECKING:
    import torch

Logits = Callable[[int, int], npt.NDArray[np.float32]]
TorchLogits = Callable[[int, int], "torch.Tensor"]
Tag = Callable[[str, str], None]

# Llama 3's vocabulary: the size decode-time samplers see in practice.
VOCAB = 128_256
TORCH_SKIP_REASON = "torch is not installed; install the bench extra to run the torch reference benchmarks"
TOP_P = 0.9
TEMPERATURE = 0.8
K = 8
ROUNDS_FAST = 20
# torch/numpy at B=64 sort 8M floats per call (~0.75 s for torch top-p on a 2-core machine).
ROUNDS_SLOW = 5


def _check_ids(ids: npt.NDArray[Any], shape: tuple[int, ...]) -> None:
    assert ids.shape == shape
    assert np.issubdtype(ids.dtype, np.integer)
    assert ids.min() >= 0
    assert ids.max() < VOCAB


def _check_distinct_rows(ids: npt.NDArray[Any]) -> None:
    # Gumbel-top-k samples without replacement: every row must hold k different ids.
    assert (np.diff(np.sort(ids, axis=-1), axis=-1) != 0).all()


# --- top-p sampling ------------------------------------------------------------------------------------


def _bench_top_p_decodekit(benchmark: Any, logits: Logits, tag: Tag, batch: int) -> None:
    tag(f"sample_top_p_B{batch}", "decodekit")
    x = logits(batch, VOCAB)
    rng = dk.Rng(0)
    ids = benchmark.pedantic(
        lambda: dk.sample(x, temperature=TEMPERATURE, top_p=TOP_P, rng=rng),
        rounds=ROUNDS_FAST,
        warmup_rounds=1,
    )
    assert ids.dtype == np.int32
    _check_ids(ids, (batch,))


def _bench_top_p_torch(benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int) -> None:
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag(f"sample_top_p_B{batch}", "torch")
    x = torch_logits(batch, VOCAB)
    gen = torch.Generator().manual_seed(0)
    ids = benchmark.pedantic(
        lambda: torch_top_p_sample(x, TOP_P, TEMPERATURE, gen), rounds=rounds, warmup_rounds=1
    )
    _check_ids(ids.numpy(), (batch,))


def _bench_top_p_numpy(benchmark: Any, logits: Logits, tag: Tag, batch: int, rounds: int) -> None:
    tag(f"sample_top_p_B{batch}", "numpy")
    x = logits(batch, VOCAB)
    rng = np.random.default_rng(0)
    ids = benchmark.pedantic(
        lambda: numpy_top_p_sample(x, TOP_P, TEMPERATURE, rng), rounds=rounds, warmup_rounds=1
    )
    _check_ids(ids, (batch,))


# Rows per call, with the rounds for the (slow) references at that batch size.
BATCHES = [pytest.param(1, ROUNDS_FAST, id="b1"), pytest.param(64, ROUNDS_SLOW, id="b64")]


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_sample_top_p_decodekit(benchmark: Any, logits: Logits, tag: Tag, batch: int, rounds: int) -> None:
    """decodekit ``sample`` with temperature and top-p (always ``ROUNDS_FAST`` rounds: it is quick)."""
    _bench_top_p_decodekit(benchmark, logits, tag, batch)


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_sample_top_p_torch(
    benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int
) -> None:
    """The sort-based torch top-p reference."""
    _bench_top_p_torch(benchmark, torch_logits, tag, batch, rounds)


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_sample_top_p_numpy(benchmark: Any, logits: Logits, tag: Tag, batch: int, rounds: int) -> None:
    """The argsort-based numpy top-p reference."""
    _bench_top_p_numpy(benchmark, logits, tag, batch, rounds)


# --- Gumbel-top-k --------------------------------------------------------------------------------------


def _bench_gumbel_decodekit(benchmark: Any, logits: Logits, tag: Tag, batch: int) -> None:
    tag(f"gumbel_top_k_k{K}_B{batch}", "decodekit")
    x = logits(batch, VOCAB)
    rng = dk.Rng(0)
    ids = benchmark.pedantic(
        lambda: dk.gumbel_top_k(x, K, temperature=TEMPERATURE, rng=rng), rounds=ROUNDS_FAST, warmup_rounds=1
    )
    assert ids.dtype == np.int32
    _check_ids(ids, (batch, K))
    _check_distinct_rows(ids)


def _bench_gumbel_torch(benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int) -> None:
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag(f"gumbel_top_k_k{K}_B{batch}", "torch")
    x = torch_logits(batch, VOCAB)
    gen = torch.Generator().manual_seed(0)
    ids = benchmark.pedantic(
        lambda: torch_gumbel_top_k(x, K, TEMPERATURE, gen), rounds=rounds, warmup_rounds=1
    ).numpy()
    _check_ids(ids, (batch, K))
    _check_distinct_rows(ids)


def _bench_topk_only(benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int) -> None:
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    tag(f"gumbel_top_k_k{K}_B{batch}", "torch_topk_only")
    x = torch_logits(batch, VOCAB)
    gen = torch.Generator().manual_seed(0)
    # The noise is drawn once, outside the timed call: this measures the top-k selection alone.
    gumbel = torch.empty_like(x).exponential_(generator=gen).log_().neg_()
    noisy = x / TEMPERATURE + gumbel
    ids = benchmark.pedantic(lambda: torch_topk_only(noisy, K), rounds=rounds, warmup_rounds=1).numpy()
    _check_ids(ids, (batch, K))
    _check_distinct_rows(ids)


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_gumbel_top_k_decodekit(benchmark: Any, logits: Logits, tag: Tag, batch: int, rounds: int) -> None:
    """decodekit ``gumbel_top_k``, k=8 (always ``ROUNDS_FAST`` rounds: it is quick)."""
    _bench_gumbel_decodekit(benchmark, logits, tag, batch)


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_gumbel_top_k_torch(
    benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int
) -> None:
    """torch Gumbel noise plus ``torch.topk``, k=8."""
    _bench_gumbel_torch(benchmark, torch_logits, tag, batch, rounds)


@pytest.mark.parametrize(("batch", "rounds"), BATCHES)
def test_gumbel_top_k_torch_topk_only(
    benchmark: Any, torch_logits: TorchLogits, tag: Tag, batch: int, rounds: int
) -> None:
    """``torch.topk`` alone on pre-noised logits (a lower bound), k=8."""
    _bench_topk_only(benchmark, torch_logits, tag, batch, rounds)


# --- reference sanity ----------------------------------------------------------------------------------


def _keep_set(row: npt.NDArray[np.float32], top_p: float, temperature: float) -> set[int]:
    """The top-p keep set of one row, computed independently in float64 with a plain loop."""
    scaled = row.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    keep: set[int] = set()
    mass = 0.0
    for i in np.argsort(-probs, kind="stable"):
        keep.add(int(i))
        mass += float(probs[i])
        if mass >= top_p:
            break
    return keep


# (logits row, top_p, temperature). "random" keeps 13 of 64 ids, the rarest with an expected 39 of 4096
# draws, so every kept id shows up; "crossing-token" keeps {0, 1}: id 1 crosses top_p and must be drawn,
# id 2 must never be.
SMOKE_CASES = [
    pytest.param(
        np.random.default_rng(1).standard_normal(64).astype(np.float32) * 2.0, TOP_P, TEMPERATURE, id="random"
    ),
    pytest.param(np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32)), 0.6, 1.0, id="crossing-token"),
]
SMOKE_DRAWS = 4096


def _draw_reference(impl: str, rows: npt.NDArray[np.float32], top_p: float, temperature: float) -> set[int]:
    if impl == "numpy":
        return set(numpy_top_p_sample(rows, top_p, temperature, np.random.default_rng(0)).tolist())
    torch = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)
    gen = torch.Generator().manual_seed(0)
    return set(torch_top_p_sample(torch.from_numpy(rows), top_p, temperature, gen).tolist())


@pytest.mark.parametrize("impl", ["numpy", "torch"])
@pytest.mark.parametrize(("row", "top_p", "temperature"), SMOKE_CASES)
def test_reference_top_p_sampler_draws_exactly_the_keep_set(
    impl: str, row: npt.NDArray[np.float32], top_p: float, temperature: float
) -> None:
    """A reference top-p sampler never draws outside the keep set and does draw the crossing token."""
    keep = _keep_set(row, top_p, temperature)
    # decodekit's own mask is a second, independent opinion on the expected keep set.
    assert keep == set(np.flatnonzero(dk.top_p_mask(row, top_p, temperature=temperature)).tolist())
    drawn = _draw_reference(impl, np.tile(row, (SMOKE_DRAWS, 1)), top_p, temperature)
    assert drawn <= keep, f"drew ids outside the keep set: {sorted(drawn - keep)}"
    assert drawn == keep, f"never drew kept ids {sorted(keep - drawn)}"
