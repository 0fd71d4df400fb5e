"""Plain numpy reference implementations of the sampling primitives, in float64.

These follow the definitions in the docstrings literally (sorting, cumulative sums, enumeration) and are
meant to be obviously right, not fast. Cut-off decisions of the fast float32 implementation can differ
from these float64 ones only when a token sits within rounding distance of a cut-off, so the mask
references return a pair of bounds: tokens that must be kept and tokens that may be kept.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    """``softmax(logits / temperature)`` of a 1-D row in float64; ``-inf`` gets 0."""
    x = np.asarray(logits, dtype=np.float64)
    if temperature == 0.0:
        top = x == x.max()
        return top / top.sum()
    z = (x - x.max()) / temperature
    e = np.exp(z)
    return e / e.sum()


def log_softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> FloatArray:
    """``log_softmax(logits / temperature)`` of a 1-D row in float64."""
    x = np.asarray(logits, dtype=np.float64)
    z = (x - x.max()) / temperature
    with np.errstate(divide="ignore"):
        return z - np.log(np.exp(z).sum())


def top_k_mask(logits: npt.ArrayLike, k: int) -> BoolArray:
    """Keep logits >= the k-th largest finite logit (ties kept); ``k == 0`` keeps every finite one."""
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x)
    if k == 0 or k >= finite.sum():
        return finite
    kth = np.sort(x[finite])[::-1][k - 1]
    return finite & (x >= kth)


def _top_p_cut(probs: FloatArray, p: float) -> float:
    """The probability of the token whose running mass (largest first) first reaches ``p``."""
    ordered = np.sort(probs)[::-1]
    cum = np.cumsum(ordered)
    reached = np.nonzero(cum >= p * cum[-1])[0]
    if p >= 1.0 or reached.size == 0:
        return 0.0
    return float(ordered[reached[0]])


def top_p_bounds(
    logits: npt.ArrayLike, p: float, temperature: float = 1.0, rtol: float = 1e-4
) -> tuple[BoolArray, BoolArray]:
    """``(must_keep, may_keep)`` for the top-p keep-mask.

    The exact mask keeps the smallest set of most probable tokens whose mass reaches ``p`` plus every
    token tied with the crossing one. ``must_keep`` is that mask with ``p`` and the cut-off nudged by
    ``rtol`` towards keeping less, ``may_keep`` towards keeping more.
    """
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x)
    probs = softmax(x, temperature)
    if temperature == 0.0:
        # The limit distribution is uniform over the tied maxima; every p keeps exactly those.
        return probs > 0, probs > 0
    if p >= 1.0:
        return finite, finite
    low = _top_p_cut(probs, p * (1 - rtol)) * (1 + rtol)
    high = _top_p_cut(probs, min(1.0, p * (1 + rtol))) * (1 - rtol)
    return finite & (probs >= low) & (probs > 0), finite & (probs >= high)


def top_p_mask(logits: npt.ArrayLike, p: float, temperature: float = 1.0) -> BoolArray:
    """The exact float64 top-p mask (for inputs far from rounding ties)."""
    must, _ = top_p_bounds(logits, p, temperature, rtol=0.0)
    return must


def min_p_bounds(
    logits: npt.ArrayLike, min_p: float, temperature: float = 1.0, rtol: float = 1e-4
) -> tuple[BoolArray, BoolArray]:
    """``(must_keep, may_keep)`` for ``p_i >= min_p * max(p)``."""
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x)
    probs = softmax(x, temperature)
    if temperature == 0.0:
        return probs > 0, probs > 0
    if min_p == 0.0:
        return finite, finite
    cut = min_p * probs.max()
    return finite & (probs >= cut * (1 + rtol)), finite & (probs >= cut * (1 - rtol))


def sampling_distribution(
    logits: npt.ArrayLike,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> FloatArray:
    """The exact output distribution of ``sample``: temperature, top-k, top-p on the renormalized
    top-k survivors, min-p, then renormalize. For inputs far from rounding ties."""
    x = np.asarray(logits, dtype=np.float64)
    probs = softmax(x, temperature)
    keep = top_k_mask(x, top_k)
    masked = np.where(keep, x, -np.inf)
    if top_p < 1.0:
        keep &= top_p_mask(masked, top_p, temperature)
    if min_p > 0.0:
        keep &= probs >= min_p * probs.max()
    out = np.where(keep, probs, 0.0)
    return out / out.sum()


def ordered_without_replacement(probs: npt.ArrayLike, k: int) -> dict[tuple[int, ...], float]:
    """Probability of every ordered k-tuple drawn by sequential sampling without replacement."""
    p = np.asarray(probs, dtype=np.float64)
    support = [i for i in range(p.size) if p[i] > 0]
    result: dict[tuple[int, ...], float] = {}
    for combo in itertools.permutations(support, k):
        prob, left = 1.0, 1.0
        for token in combo:
            prob *= p[token] / left
            left -= p[token]
        result[combo] = prob
    return result


def stochastic_beam_search_step(
    beam_log_probs: npt.ArrayLike,
    beam_gumbels: npt.ArrayLike,
    child_log_probs: npt.ArrayLike,
    k: int,
    rng: np.random.Generator,
) -> tuple[list[int], list[int], list[float], list[float]]:
    """One SBS step exactly as written by Kool et al. (2019), Algorithm 1 with the stable truncation.

    Every child gets unconditioned noise ``G'_ij = phi_ij + Gumbel(0)``; with ``Z_i = max_j G'_ij`` the
    truncated score is ``-log(exp(-G_i) - exp(-Z_i) + exp(-G'_ij))``; the k best over all beams win.
    """
    phi = np.asarray(beam_log_probs, dtype=np.float64)
    g = np.asarray(beam_gumbels, dtype=np.float64)
    child = np.asarray(child_log_probs, dtype=np.float64)
    candidates: list[tuple[float, int, int, float]] = []
    for i in range(child.shape[0]):
        finite = np.isfinite(child[i])
        if not finite.any():
            continue
        phi_ij = phi[i] + child[i]
        noisy = phi_ij + rng.gumbel(size=child.shape[1])
        noisy[~finite] = -np.inf
        z = noisy.max()
        for j in np.nonzero(finite)[0]:
            # -log(exp(-G) - exp(-Z) + exp(-G')) written to avoid overflow: v = G - G' + log1mexp(G - Z).
            v = g[i] - noisy[j] + math.log1p(-math.exp(noisy[j] - z)) if noisy[j] < z else -math.inf
            score = g[i] - (math.log1p(math.exp(v)) if v < 30 else v)
            candidates.append((score, i, int(j), float(phi_ij[j])))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    best = candidates[:k]
    return [c[1] for c in best], [c[2] for c in best], [c[3] for c in best], [c[0] for c in best]


# --- draft trees --------------------------------------------------------------------------------------


def tree_depth(parents: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Depth of every node of a parent array (parents before children)."""
    par = np.asarray(parents)
    depth = np.zeros(par.size, dtype=np.int64)
    for i in range(1, par.size):
        depth[i] = depth[par[i]] + 1
    return depth


def ancestor_mask(parents: npt.ArrayLike) -> BoolArray:
    """``mask[i, j]`` is true iff ``j`` is ``i`` or an ancestor of ``i`` (walks each node up to the root)."""
    par = np.asarray(parents)
    n = par.size
    mask = np.zeros((n, n), dtype=np.bool_)
    for i in range(n):
        j = i
        while j != -1:
            mask[i, j] = True
            j = par[j]
    return mask


def pack_rows(mask: BoolArray) -> npt.NDArray[np.int32]:
    """Pack a bool ``[n, m]`` mask into int32 words, bit ``j % 32`` of word ``j // 32``."""
    n, m = mask.shape
    words = (m + 31) // 32
    out = np.zeros((n, words), dtype=np.uint32)
    for i in range(n):
        for j in np.nonzero(mask[i])[0]:
            out[i, j // 32] |= np.uint32(1 << (j % 32))
    return out.view(np.int32)


def leaves(parents: npt.ArrayLike) -> list[int]:
    par = np.asarray(parents)
    has_child = np.zeros(par.size, dtype=np.bool_)
    has_child[par[1:]] = True
    return [i for i in range(par.size) if not has_child[i]]


def retrieve_indices(parents: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Root-to-leaf paths, one row per leaf in node order, padded with -1."""
    par = np.asarray(parents)
    depth = tree_depth(par)
    rows = []
    for leaf in leaves(par):
        path = []
        j = leaf
        while j != -1:
            path.append(j)
            j = par[j]
        rows.append(path[::-1] + [-1] * (int(depth.max()) + 1 - len(path)))
    return np.array(rows, dtype=np.int32).reshape(len(rows), int(depth.max()) + 1)


def first_child_next_sibling(parents: npt.ArrayLike) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    par = np.asarray(parents)
    n = par.size
    first = np.full(n, -1, dtype=np.int32)
    nxt = np.full(n, -1, dtype=np.int32)
    last_child: dict[int, int] = {}
    for i in range(1, n):
        p = int(par[i])
        if first[p] == -1:
            first[p] = i
        else:
            nxt[last_child[p]] = i
        last_child[p] = i
    return first, nxt


def prefix_mask(parents: npt.ArrayLike, prefix_len: int) -> BoolArray:
    """``[n, prefix_len + n]``: the prefix is visible to every node, then the ancestor mask."""
    anc = ancestor_mask(parents)
    return np.concatenate([np.ones((anc.shape[0], prefix_len), dtype=np.bool_), anc], axis=1)


def greedy_brute_force(
    tokens: list[int], parents: list[int], target_tokens: list[int]
) -> tuple[list[int], list[int]]:
    """Check every root-to-node path; keep the longest whose tokens all match (lowest end node on ties)."""
    best: list[int] = [0]
    for node in range(len(tokens)):
        path = []
        j = node
        while j != -1:
            path.append(j)
            j = parents[j]
        path.reverse()
        if all(tokens[path[k + 1]] == target_tokens[path[k]] for k in range(len(path) - 1)) and len(
            path
        ) > len(best):
            best = path
    return best, [tokens[j] for j in best[1:]] + [target_tokens[best[-1]]]


# --- n-gram drafters ------------------------------------------------------------------------------------


def vllm_ngram_propose(tokens: list[int], min_n: int, max_n: int, k: int) -> list[int]:
    """A port of vLLM's n-gram proposer algorithm (KMP over the reversed context, longest border capped
    at ``max_n``; the earliest occurrence of the longest match wins)."""
    total = len(tokens)
    if total < min_n or k <= 0:
        return []
    rev = tokens[::-1]
    lps = [0] * max_n
    longest, position, prev, i = 0, 0, 0, 1
    while i < total:
        if rev[prev] == rev[i]:
            prev += 1
            if prev >= longest:
                longest, position = prev, i
            if i < max_n:
                lps[i] = prev
            if prev == max_n:
                prev = lps[max_n - 1]
            i += 1
        elif prev != 0:
            prev = lps[prev - 1]
        else:
            i += 1
    if longest < min_n:
        return []
    start = total - 1 - position + longest
    return tokens[start : start + min(k, total - start)]


def brute_force_ngram_match(
    tokens: list[int], min_n: int, max_n: int, k: int, *, latest: bool = False
) -> tuple[int, list[int]]:
    """The matching rule stated directly: the largest n whose suffix n-gram occurs earlier (ending before
    the last token), its earliest occurrence (the most recent one if ``latest``), and the up to k tokens
    after it. Returns ``(n, continuation)``; ``(0, [])`` without a match."""
    total = len(tokens)
    for n in range(max_n, min_n - 1, -1):
        if total < n + 1:
            continue
        suffix = tokens[total - n :]
        starts = [s for s in range(0, total - n) if tokens[s : s + n] == suffix]
        if starts:
            s = starts[-1] if latest else starts[0]
            return n, tokens[s + n : s + n + k]
    return 0, []


def brute_force_ngram_propose(tokens: list[int], min_n: int, max_n: int, k: int) -> list[int]:
    """The continuation of :func:`brute_force_ngram_match` (earliest occurrence)."""
    return brute_force_ngram_match(tokens, min_n, max_n, k)[1]


# --- token recycling ------------------------------------------------------------------------------------


def recycling_propose(
    matrix: npt.NDArray[np.int32], parents: list[int], ranks: list[int], root: int
) -> tuple[list[int], list[int]]:
    """The paper's level-by-level gather: every level looks up its parents' rows at once (as one gather
    would), then nodes whose slot is -1 are dropped with their subtrees. Returns (tokens, parents)."""
    depth = tree_depth(parents)
    token = {0: root}
    for level in range(1, int(depth.max(initial=0)) + 1):
        nodes = [i for i in range(len(parents)) if depth[i] == level and parents[i] in token]
        gathered = matrix[[token[parents[i]] for i in nodes], [ranks[i] for i in nodes]] if nodes else []
        for i, t in zip(nodes, gathered, strict=True):
            if t >= 0:
                token[i] = int(t)
    kept = sorted(token)
    new_index = {old: new for new, old in enumerate(kept)}
    return [token[i] for i in kept], [-1 if i == 0 else new_index[parents[i]] for i in kept]


# --- regex grammars -------------------------------------------------------------------------------------


def _utf8_completions(tail: bytes, pattern: str) -> list[str]:
    """Characters standing for every way to complete ``tail`` (an incomplete UTF-8 sequence): each
    non-ASCII character the pattern names that starts with these bytes, plus the smallest one it does
    not name."""
    lead = tail[0]
    length = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
    if length == 0 or len(tail) >= length:
        return []
    named = {c for c in pattern if ord(c) > 127 and c.encode("utf-8").startswith(tail)}
    for rest in itertools.product(range(0x80, 0xC0), repeat=length - len(tail)):
        try:
            other = (tail + bytes(rest)).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if other not in named:
            return [*sorted(named), other]
    return sorted(named)


def regex_viable(pattern: str, text: bytes) -> bool:
    r"""Whether ``text`` is a prefix of some string that fully matches ``pattern``, decided by the
    third-party ``regex`` module's partial matching.

    A trailing incomplete UTF-8 sequence is tried with each completion of ``_utf8_completions``. That is
    exact for patterns whose only distinctions among non-ASCII characters are the characters they name
    literally (``.``, ``[^"\\]``, ``[a-cé]``, ASCII classes: the practical corpus and the random
    regexes); patterns with Unicode classes such as ``\d`` or ``\w`` are checked against llguidance.
    """
    import regex

    try:
        candidates = [text.decode("utf-8")]
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":
            return False
        head = text[: error.start].decode("utf-8")
        candidates = [head + c for c in _utf8_completions(text[error.start :], pattern)]
    return any(regex.fullmatch(pattern, c, partial=True) is not None for c in candidates)


def regex_allowed_tokens(
    pattern: str, token_bytes: list[bytes], special: set[int], eos: set[int], prefix: bytes
) -> set[int]:
    """Brute force: every normal token whose bytes keep ``prefix`` viable, plus EOS when ``prefix`` fully
    matches. Tokens are grouped by first byte so that a dead first byte rules out its whole group."""
    import regex

    allowed: set[int] = set()
    viable_first: dict[int, bool] = {}
    for i, token in enumerate(token_bytes):
        if i in special or not token:
            continue
        first = token[0]
        if first not in viable_first:
            viable_first[first] = regex_viable(pattern, prefix + token[:1])
        if viable_first[first] and regex_viable(pattern, prefix + token):
            allowed.add(i)
    try:
        if regex.fullmatch(pattern, prefix.decode("utf-8")) is not None:
            allowed |= eos
    except UnicodeDecodeError:
        pass
    return allowed


# --- tree attention -------------------------------------------------------------------------------------


def tree_attention(
    q: npt.NDArray[np.floating],
    k_cache: npt.NDArray[np.floating],
    v_cache: npt.NDArray[np.floating],
    tree_visible: npt.NDArray[np.bool_],
    prefix_len: int,
    scale: float,
) -> npt.NDArray[np.float64]:
    """float64 attention of T tree queries ``[T, Hq, D]`` over ``prefix_len`` prefix keys (all visible) and
    the T tree keys (visible where ``tree_visible[i, j]``), one query head at a time; GQA maps query head
    ``h`` to KV head ``h // (Hq // Hkv)``."""
    num_tree, num_q_heads, head_dim = q.shape
    group = num_q_heads // k_cache.shape[1]
    num_keys = prefix_len + num_tree
    visible = np.concatenate([np.ones((num_tree, prefix_len), dtype=bool), tree_visible], axis=1)
    out = np.zeros((num_tree, num_q_heads, head_dim))
    for head in range(num_q_heads):
        keys = k_cache[:num_keys, head // group].astype(np.float64)
        values = v_cache[:num_keys, head // group].astype(np.float64)
        scores = q[:, head].astype(np.float64) @ keys.T * scale
        scores[~visible] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        weights = np.exp(scores)
        out[:, head] = (weights / weights.sum(axis=1, keepdims=True)) @ values
    return out


# --- weight-only quantization ---------------------------------------------------------------------------


def quantize_weight(
    weight: npt.NDArray[np.floating], bits: int, group_size: int, symmetric: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """float64 group quantization of ``weight [N, K]``: unsigned codes ``[N, K]``, scales and zero points
    ``[N, K / group_size]``, so that ``weight ~ (code - zero) * scale``."""
    rows, cols = weight.shape
    groups = weight.astype(np.float64).reshape(rows, cols // group_size, group_size)
    levels = 2**bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        absmax = np.abs(groups).max(axis=-1)
        scales = np.where(absmax > 0, absmax / (half - 1), 1.0)
        zeros = np.full_like(scales, half)
    else:
        lo = np.minimum(groups.min(axis=-1), 0.0)
        hi = np.maximum(groups.max(axis=-1), 0.0)
        scales = np.where(hi > lo, (hi - lo) / levels, 1.0)
        zeros = np.clip(np.round(-lo / scales), 0, levels)
    codes = np.clip(np.round(groups / scales[..., None]) + zeros[..., None], 0, levels)
    return codes.reshape(rows, cols).astype(np.int64), scales, zeros
