"""Shared inputs and bookkeeping for the benchmarks.

torch is optional: nothing here imports it at module level, and both the ``torch_logits`` fixture and the
torch benchmarks go through ``pytest.importorskip``, so a missing torch shows up as a skip with its reason,
never as a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import decodekit as dk
import numpy as np
import numpy.typing as npt
import pytest

if TYPE_CHECKING:
    import torch

TORCH_SKIP_REASON = "torch is not installed; install the bench extra to run the torch reference benchmarks"


@cache
def _logits(batch: int, vocab: int) -> npt.NDArray[np.float32]:
    # Scaled by 2 so that top_p=0.9 keeps a realistic fraction of the vocabulary rather than nearly all of
    # it, as it would for unit-variance logits.
    x: npt.NDArray[np.float32] = np.random.default_rng(0).standard_normal((batch, vocab)).astype(np.float32)
    x *= np.float32(2.0)
    return x


@pytest.fixture(scope="session")
def logits() -> Callable[[int, int], npt.NDArray[np.float32]]:
    """Return ``make(B, V)``: deterministic float32 logits of shape ``[B, V]``, built once per shape."""
    return _logits


@pytest.fixture(scope="session")
def torch_logits() -> Callable[[int, int], torch.Tensor]:
    """Return ``make(B, V)``: the torch view of the same logits (shared memory, no copy).

    Skips the requesting test, with the reason, when torch is not installed.
    """
    torch_mod = pytest.importorskip("torch", reason=TORCH_SKIP_REASON)

    @cache
    def make(batch: int, vocab: int) -> torch.Tensor:
        tensor: torch.Tensor = torch_mod.from_numpy(_logits(batch, vocab))
        return tensor

    return make


@pytest.fixture
def tag(benchmark: Any) -> Callable[[str, str], None]:
    """Return ``tag(group, impl)``, which files the benchmark under ``group`` and records the thread counts.

    The thread counts are left at their defaults and recorded rather than pinned, so the report says what
    each library was allowed to use.
    """

    def apply(group: str, impl: str) -> None:
        benchmark.group = group
        benchmark.extra_info["impl"] = impl
        benchmark.extra_info["decodekit_num_threads"] = dk.get_num_threads()
        if impl.startswith("torch"):
            import torch

            benchmark.extra_info["torch_num_threads"] = torch.get_num_threads()

    return apply
