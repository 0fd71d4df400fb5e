"""Faithful, unoptimized reference samplers in the style real inference stacks use.

These are the baselines decodekit is measured against, so they follow the standard recipes (HF
``TopPLogitsWarper`` / vLLM's sort-based top-p, the Gumbel-top-k trick with ``torch.topk``) rather than
anything tuned for this benchmark. torch is optional: it is only imported for type checking here, and the
torch samplers use tensor methods, so the numpy reference imports without torch installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch


def _check_rows(ndim: int) -> None:
    if ndim != 2:
        raise ValueError(f"expected logits of shape [B, V], got {ndim} dimension(s)")


def torch_top_p_sample(
    logits: torch.Tensor, top_p: float, temperature: float, generator: torch.Generator
) -> torch.Tensor:
    """Sample one token id per row of ``logits`` ([B, V]) with temperature and top-p (nucleus) filtering.

    The sort-based HF/vLLM recipe: scale by ``1 / temperature``, sort descending, softmax, cumulative sum,
    drop every token whose cumulative probability *before* it already exceeds ``top_p`` (so the token that
    crosses ``top_p`` is kept), renormalize over the survivors, draw with ``torch.multinomial`` and map the
    sorted position back to the original token id. Returns int64 ``[B]``.
    """
    _check_rows(logits.dim())
    scaled = logits / temperature
    sorted_logits, sorted_ids = scaled.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # Exclusive cumsum: the mass of the strictly more probable tokens, so the crossing token survives.
    mass_before = probs.cumsum(dim=-1) - probs
    filtered = sorted_logits.masked_fill(mass_before > top_p, float("-inf"))
    choice = filtered.softmax(dim=-1).multinomial(1, generator=generator)
    return sorted_ids.gather(-1, choice).squeeze(-1)


def numpy_top_p_sample(
    logits: npt.NDArray[np.float32], top_p: float, temperature: float, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """The numpy counterpart of :func:`torch_top_p_sample` for ``logits`` of shape [B, V].

    Argsort each row descending, softmax, cumulative sum, keep the tokens whose preceding mass does not
    exceed ``top_p``, then draw by inverse-CDF sampling with one ``rng.random()`` per row over the kept
    (unnormalized) probabilities. Returns int64 ``[B]``.
    """
    _check_rows(logits.ndim)
    scaled = logits / np.float32(temperature)
    order = np.argsort(-scaled, axis=-1)
    sorted_logits = np.take_along_axis(scaled, order, axis=-1)
    # The first sorted column is the row maximum, which keeps exp() from overflowing.
    probs = np.exp(sorted_logits - sorted_logits[:, :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    cum = np.cumsum(probs, axis=-1)
    keep = (cum - probs) <= top_p
    kept_cdf = np.cumsum(np.where(keep, probs, np.float32(0.0)), axis=-1)
    u = rng.random(logits.shape[0]) * kept_cdf[:, -1]
    # The first position whose CDF exceeds u; the clamp guards against u rounding up to the total mass.
    pos = np.count_nonzero(kept_cdf <= u[:, None], axis=-1)
    pos = np.minimum(pos, np.count_nonzero(keep, axis=-1) - 1)
    return np.take_along_axis(order, pos[:, None], axis=-1)[:, 0].astype(np.int64)


def torch_gumbel_top_k(
    logits: torch.Tensor, k: int, temperature: float, generator: torch.Generator
) -> torch.Tensor:
    """``k`` distinct token ids per row, drawn without replacement from ``softmax(logits / temperature)``.

    The Gumbel-top-k trick: ``torch.topk(logits / temperature + G, k)`` with ``G = -log(-log(U))``
    standard Gumbel noise, ``U`` uniform. The noise is drawn inside the call because a sampler needs fresh
    noise every step, so its cost is part of what is measured. ``torch.rand`` plus two in-place logs is
    the fastest way to make Gumbel noise on the CPU that we found (about 3x faster than
    ``-log(Exponential(1))`` through ``exponential_``), so it is the reference. Returns int64 ``[B, k]``
    (or ``[k]`` for 1-D logits) in draw order.
    """
    import torch  # optional dependency: imported only when a torch reference actually runs

    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
    # rand is in [0, 1): a zero would make -log(-log(0)) = -inf, which only demotes that token.
    gumbel = uniform.log_().neg_().log_().neg_()
    return (logits / temperature + gumbel).topk(k, dim=-1).indices


def torch_topk_only(noisy_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Only the ``torch.topk`` part of :func:`torch_gumbel_top_k`, on logits already perturbed with noise.

    This is a lower bound for any torch Gumbel-top-k (it skips scaling and noise generation), reported
    separately so the comparison is not just against torch's random number generator.
    """
    return noisy_logits.topk(k, dim=-1).indices
