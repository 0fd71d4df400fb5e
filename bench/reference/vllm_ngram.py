"""vLLM's n-gram (prompt lookup) proposer, re-implemented step for step and compiled with numba.

:func:`vllm_ngram_propose` follows ``_find_longest_matched_ngram_and_propose_tokens`` in vLLM's
``vllm/v1/spec_decode/ngram_proposer.py`` (vllm-project/vllm, the V1 engine), which vLLM also runs under
``numba.jit(nopython=True)``. It is our own re-implementation of the same algorithm, not a copy:

* The context is reversed, so "the longest suffix n-gram that occurred earlier" becomes "the longest
  prefix of the reversed context that occurs again further right".
* One left-to-right KMP scan over the reversed context finds it. The failure (LPS) table is only kept for
  the first ``max_n`` positions, and a running match that reaches ``max_n`` falls back through the table,
  so matches never grow past ``max_n`` and the memory is ``O(max_n)``.
* Every time the running match length reaches or ties the best length so far, the position is updated
  (``>=``): the rightmost position in the reversed context is the *earliest* occurrence in the original,
  so the earliest occurrence of the longest match wins.
* The proposal is the up to ``k`` tokens that followed that occurrence. If the best match is shorter than
  ``min_n`` (or the context is), nothing is proposed.

vLLM additionally caps ``k`` at ``max_model_len - len(context)``; the benchmark contexts are far from any
model length, so that argument is left out. The scan always reads the whole context: its cost is linear
in the context length whatever the match, which is what the benchmark measures.

numba is optional: it is imported the first time a compiled kernel is needed, so this module imports
without it (and :func:`ngram_propose_python`, the same kernel uninterpreted by numba, runs without it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.integer[Any]]


def _find_longest_matched_ngram(tokens: IntArray, min_n: int, max_n: int, k: int) -> IntArray:
    """The numba kernel (plain Python that numba can compile): see the module docstring."""
    total = tokens.shape[0]
    if total < min_n or k <= 0:
        return tokens[:0]
    rev = tokens[::-1]
    # lps[j] = length of the longest proper prefix of rev[: j + 1] that is also its suffix, kept for
    # j < max_n only: a running match never exceeds max_n, so no longer prefix is ever consulted.
    lps = np.zeros(max_n, dtype=np.int32)
    best_len = 0
    best_pos = 0
    matched = 0  # rev[:matched] is the longest prefix of rev that ends at position i - 1
    i = 1
    while i < total:
        if rev[matched] == rev[i]:
            matched += 1
            # Ties move the position right in rev, i.e. earlier in the original order.
            if matched >= best_len:
                best_len = matched
                best_pos = i
            if i < max_n:
                lps[i] = matched
            if matched == max_n:
                # Cap the match at max_n: continue from the next shorter border instead.
                matched = lps[max_n - 1]
            i += 1
        elif matched > 0:
            matched = lps[matched - 1]
        else:
            i += 1
    if best_len < min_n:
        return tokens[:0]
    # rev[best_pos - best_len + 1 : best_pos + 1] is the match; in the original order it ends at
    # total - 1 - best_pos + best_len (exclusive), where the proposal starts.
    start = total - 1 - best_pos + best_len
    stop = min(start + k, total)
    return tokens[start:stop]


def ngram_propose_python(tokens: IntArray, min_n: int, max_n: int, k: int) -> IntArray:
    """The same kernel run by the Python interpreter (no numba): for cross-checks on small inputs."""
    return _find_longest_matched_ngram(np.ascontiguousarray(tokens), min_n, max_n, k)


@cache
def _compiled() -> Callable[[IntArray, int, int, int], IntArray]:
    import numba  # optional dependency: imported only when the compiled reference actually runs

    kernel: Callable[[IntArray, int, int, int], IntArray] = numba.njit(cache=False, nogil=True)(
        _find_longest_matched_ngram
    )
    return kernel


def warmup(dtype: npt.DTypeLike = np.int32) -> None:
    """Compile the numba kernel for ``dtype`` contexts, so compilation stays out of any timed region."""
    _compiled()(np.arange(64, dtype=dtype) % 7, 1, 4, 8)


def vllm_ngram_propose(tokens: IntArray, min_n: int, max_n: int, k: int) -> IntArray:
    """Up to ``k`` tokens that followed the earliest occurrence of the longest suffix n-gram.

    ``tokens`` is the whole context (a 1-D contiguous int array, as vLLM passes its ``token_ids_cpu``
    row); the n-gram length is searched in ``[min_n, max_n]``. Returns a view of ``tokens`` (empty when
    nothing matches). Needs numba; call :func:`warmup` first to keep the compilation out of timings.
    """
    return _compiled()(tokens, min_n, max_n, k)
