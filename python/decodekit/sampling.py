"""Typed Python faces of the sampling primitives that return several arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from decodekit import _core


class BeamStep(NamedTuple):
    """The ``k`` beams chosen by one Stochastic Beam Search step, best (highest score) first."""

    parents: npt.NDArray[np.int32]
    """``int32[k]``: index of the parent beam of each new beam."""
    tokens: npt.NDArray[np.int32]
    """``int32[k]``: the token appended to the parent."""
    log_probs: npt.NDArray[np.float64]
    """``float64[k]``: log probability of the extended sequence (the next step's ``beam_log_probs``)."""
    scores: npt.NDArray[np.float64]
    """``float64[k]``: perturbed Gumbel score (the next step's ``beam_gumbels``)."""


def stochastic_beam_search_step(
    beam_log_probs: npt.ArrayLike,
    beam_gumbels: npt.ArrayLike,
    child_log_probs: npt.ArrayLike,
    k: int,
    rng: _core.Rng,
) -> BeamStep:
    """One step of Stochastic Beam Search (Kool, van Hoof and Welling, ICML 2019).

    SBS samples ``k`` sequences *without replacement* from a sequence model by running beam search on
    Gumbel-perturbed log probabilities. Each beam ``i`` carries its log probability ``phi_i``
    (``beam_log_probs``, float64 ``[W]``) and its perturbed score ``G_i`` (``beam_gumbels``, float64
    ``[W]``; start the root with ``G = phi + Gumbel(0)`` noise or simply ``0``). Child ``j`` of beam ``i``
    (``child_log_probs[i, j]``, float32 ``[W, V]``, the model's next-token log probabilities; ``-inf`` for
    impossible tokens) has log probability ``phi_ij = phi_i + child_log_probs[i, j]``.

    The children receive perturbed scores ``G_ij ~ Gumbel(phi_ij)`` *conditioned on* ``max_j G_ij = G_i``,
    so a child never outranks its parent and the scores stay consistent down the tree; Kool et al. obtain
    them by sampling unconditioned ``G'_ij`` with maximum ``Z_i`` and setting
    ``G_ij = -log(exp(-G_i) - exp(-Z_i) + exp(-G'_ij))``. The step keeps the ``k`` children with the
    largest ``G_ij`` over all beams. Here the at most ``k`` best children of each beam are drawn top-down
    instead, which gives the same distribution in ``O(V + k)`` per beam: the best child of beam ``i`` is
    distributed as ``softmax(child_log_probs[i])`` and scores exactly ``G_i``; after removing the children
    drawn so far, the next child is drawn from the softmax over the rest, and its score is a Gumbel with
    location ``phi_i + logsumexp(rest)`` truncated below the previous score, ``-log(exp(-prev) + exp(-g))``.

    Beams whose children are all ``-inf`` contribute none. ``k`` may not exceed the number of finite
    children. Randomness: one seed is drawn from ``rng`` per call, beam ``i`` uses stream ``i`` of it.
    """
    parents, tokens, log_probs, scores = _core.stochastic_beam_search_step(
        beam_log_probs, beam_gumbels, child_log_probs, k, rng
    )
    return BeamStep(parents, tokens, log_probs, scores)
