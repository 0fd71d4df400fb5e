"""Constrained decoding helpers around the grammar classes of :mod:`decodekit._core`.

A :class:`~decodekit.Grammar` (a language over bytes) is compiled for a :class:`~decodekit.Vocabulary`
into a :class:`~decodekit.CompiledGrammar`; one :class:`~decodekit.Matcher` per sequence then fills token
bitmasks: int32 ``[batch, ceil(V / 32)]``, bit ``j`` of word ``w`` (little-endian) set when token
``32 * w + j`` is allowed, the layout xgrammar, llguidance and vLLM share.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from decodekit import _core


def allocate_token_bitmask(batch: int, vocab_size: int) -> npt.NDArray[np.int32]:
    """A new int32 bitmask ``[batch, ceil(vocab_size / 32)]`` with every token allowed.

    Rows start all-ones so that a row no matcher fills (a sequence without a grammar) masks nothing.
    """
    if batch < 0 or vocab_size <= 0:
        raise _core.InvalidInputError(
            f"batch must be >= 0 and vocab_size > 0, got batch={batch}, vocab_size={vocab_size}"
        )
    return np.full((batch, (vocab_size + 31) // 32), -1, dtype=np.int32)


def bitmask_to_ids(row: npt.ArrayLike, vocab_size: int | None = None) -> npt.NDArray[np.int32]:
    """The token ids allowed by one bitmask row (int32 ``[words]``), ascending, below ``vocab_size``."""
    words = np.ascontiguousarray(row, dtype=np.int32)
    if words.ndim != 1:
        raise _core.InvalidInputError(f"row must be 1-D [words], got shape {words.shape}")
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    ids = np.flatnonzero(bits).astype(np.int32)
    return ids if vocab_size is None else ids[ids < vocab_size]
