"""Drafters for :func:`decodekit.generate`: objects that propose a draft tree before each verification step.

A drafter implements :class:`Drafter`. The built-in ones wrap the core tables:

* :class:`PromptLookupDrafter` (``"prompt_lookup"``): n-gram matches in the sequence itself.
* :class:`NGramStoreDrafter` (``"ngram_store"``): prompt lookup that falls back on an
  :class:`~decodekit.NGramStore` of earlier sequences (every finished generation is added to it).
* :class:`RecyclingDrafter` (``"recycling"``): Token Recycling's adjacency matrix of the target's own
  top-k predictions, kept across generations.
* :class:`AdedDrafter` (``"aded"``): ADED's adaptive tri-gram table with MCTS drafts, adapted online.
* :class:`MergedDrafter` (``"merged"``): several drafters' trees merged into one; by default Token
  Recycling plus prompt lookup.

A name given to :func:`decodekit.generate` builds a fresh drafter for that call. Drafters that learn across
requests (the store, the recycling matrix, the tri-gram table) do so only when the same object is passed
to every call. Tree sizes default to what pays off on a CPU, where scoring each extra token costs a few
percent of a forward; on a GPU, larger trees (``max_nodes``, ``template``) accept more per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from decodekit import _core
from decodekit.torch import recycle

# Token Recycling's acceptance probability of the rank-r candidate at depth d + 1 (rows: depths 1-6), as
# measured with the embedded SmolLM2-135M-Instruct greedy on the 26 mini-benchmark prompts (a 60-node
# breadth-first template, the matrix kept across prompts: 1,006 depth-1 and 609 depth-2 trials); depths 3-6
# reuse the depth-2 rates. Shapes the default template through TreeTemplate.from_acceptance.
_RECYCLING_ACCEPTANCE = np.array(
    [[0.398, 0.095, 0.044, 0.026, 0.026, 0.030, 0.016, 0.016]]
    + [[0.361, 0.095, 0.074, 0.040, 0.022, 0.029, 0.013, 0.012]] * 5,
    dtype=np.float64,
)


@runtime_checkable
class Drafter(Protocol):
    """What :func:`decodekit.generate` asks of a drafter (one sequence at a time).

    * ``begin(prompt, vocab_size)``: a new sequence starts with ``prompt`` (list of ids); ``vocab_size`` is
      the model's logits width.
    * ``propose(tokens)``: a :class:`~decodekit.DraftTree` rooted at ``tokens[-1]`` (the sequence so far;
      its last token is not yet scored by the model). A root-only tree means "no draft".
    * ``update(tree, logits, new_tokens)``: after a step scored ``tree`` (``logits``: the model's
      ``[n, V]`` torch tensor, row ``i`` after node ``i``, grammar masks applied; ``None`` when no scores
      are available) and emitted ``new_tokens``.
    * ``finish(tokens)``: the sequence ended with ``tokens`` (prompt and output).

    The first ``update`` comes from the prefill: ``tree`` is a chain of prompt tokens (just the last one,
    unless the drafter has a true ``wants_prompt_logits`` attribute: then the last 1,024 at most) with the
    logits after each, and ``new_tokens`` is the first generated token.
    """

    def begin(self, prompt: Sequence[int], vocab_size: int) -> None:
        """Start a sequence."""
        ...

    def propose(self, tokens: Sequence[int]) -> _core.DraftTree:
        """A draft tree rooted at ``tokens[-1]``."""
        ...

    def update(self, tree: _core.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        """Learn from one verification step."""
        ...

    def finish(self, tokens: Sequence[int]) -> None:
        """The sequence is complete."""
        ...


class PromptLookupDrafter:
    """Prompt lookup (``decodekit.PromptLookup``): the continuation of the longest recent n-gram match.

    One chain after the most recent occurrence (``latest=True``) of the longest suffix n-gram (``min_n`` to
    ``max_n`` tokens), and nothing when no n-gram matches, so such steps cost a plain one. The chain is cut
    where it stops paying: the drafter learns online, for each match length ``n``, how often the token
    at each depth is accepted once the tokens before it were (a Beta-smoothed count), and keeps the
    longest prefix whose estimated probability of being accepted whole is at least ``min_accept_prob``
    (at least one token). Long matches thus draft long chains and one-token matches short ones. The
    default 0.05 suits a CPU, where trees beyond about 6 tokens cost 10-15% more per 6 tokens
    (``docs/generate.md``); on a GPU, where extra tokens are nearly free, use 0 (the whole ``max_depth``
    chain, as vLLM's n-gram proposer drafts).
    ``max_nodes`` > ``max_depth`` merges several matches into a tree (not cut); ``store`` adds an
    :class:`~decodekit.NGramStore` fallback (match length 0 in the estimates).
    """

    _makes_store = False  # NGramStoreDrafter makes its own store when none is given
    # prior of the per-depth acceptance estimates: PRIOR_WEIGHT pseudo-trials at PRIOR_RATE
    PRIOR_RATE = 0.6
    PRIOR_WEIGHT = 2.0

    def __init__(
        self,
        min_n: int = 1,
        max_n: int = 4,
        max_depth: int = 16,
        max_nodes: int = 16,
        *,
        store: _core.NGramStore | None = None,
        latest: bool = True,
        min_accept_prob: float = 0.05,
    ) -> None:
        if not 0.0 <= min_accept_prob <= 1.0:
            raise _core.InvalidInputError(f"min_accept_prob must be in [0, 1], got {min_accept_prob}")
        self._params = {"min_n": min_n, "max_n": max_n, "max_depth": max_depth, "max_nodes": max_nodes}
        if store is None and self._makes_store:
            store = _core.NGramStore(max_n)
        self.store = store
        self.min_accept_prob = min_accept_prob
        # Built here so that bad parameters fail before any generation starts.
        self._lookup = _core.PromptLookup(**self._params, store=store, latest=latest)
        # [match length, depth]: times the token at that depth was compared / accepted (depth 0 unused)
        self._tested = np.zeros((max_n + 1, max_depth + 1))
        self._passed = np.zeros((max_n + 1, max_depth + 1))
        self._pending: tuple[int, list[int]] | None = None

    def acceptance(self, match_length: int) -> npt.NDArray[np.float64]:
        """Estimated probability that a chain after a match of ``match_length`` tokens (0: the store's
        proposals) is accepted through depth ``d``, for ``d = 1 .. max_depth`` (non-increasing)."""
        if not 0 <= match_length < self._tested.shape[0]:
            raise _core.InvalidInputError(
                f"match_length must be in 0..{self._tested.shape[0] - 1} (max_n), got {match_length}"
            )
        tested = self._tested[match_length, 1:]
        passed = self._passed[match_length, 1:]
        rate = (passed + self.PRIOR_WEIGHT * self.PRIOR_RATE) / (tested + self.PRIOR_WEIGHT)
        return np.cumprod(rate, dtype=np.float64)

    def begin(self, prompt: Sequence[int], vocab_size: int) -> None:
        """Index the prompt."""
        self._lookup.reset()
        self._lookup.extend(np.asarray(prompt, dtype=np.int32))
        self._pending = None

    def propose(self, tokens: Sequence[int]) -> _core.DraftTree:
        """The lookup's draft after the indexed tokens, cut by the acceptance estimates."""
        tree = self._lookup.propose()
        self._pending = None
        drafted = tree.num_nodes - 1
        if drafted == 0 or tree.max_depth != drafted:  # nothing, or a tree of several matches
            return tree
        n = self._lookup.match_length()
        chain = tree.tokens[1:]
        self._pending = (n, chain.tolist())
        if self.min_accept_prob <= 0.0:
            return tree
        keep = max(1, int(np.count_nonzero(self.acceptance(n)[:drafted] >= self.min_accept_prob)))
        if keep == drafted:
            return tree
        return _core.DraftTree.chain(int(tree.tokens[0]), chain[:keep])

    def update(self, tree: _core.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        """Index the new tokens; score the last proposal's whole chain against them."""
        self._lookup.extend(np.asarray(new_tokens, dtype=np.int32))
        if self._pending is None:
            return
        n, chain = self._pending
        self._pending = None
        known = min(len(chain), len(new_tokens))
        accepted = 0
        while accepted < known and chain[accepted] == new_tokens[accepted]:
            accepted += 1
        # depths 1..accepted matched; the next one, if its true token is known, did not
        self._passed[n, 1 : accepted + 1] += 1
        self._tested[n, 1 : min(accepted + 1, known) + 1] += 1

    def finish(self, tokens: Sequence[int]) -> None:
        """The acceptance estimates are kept; nothing else is."""


class NGramStoreDrafter(PromptLookupDrafter):
    """Prompt lookup with an :class:`~decodekit.NGramStore` fallback (a new one unless ``store`` is given;
    same parameters as :class:`PromptLookupDrafter`); each finished sequence is added to the store, so later
    requests draft from earlier ones (pass the same drafter to every call)."""

    _makes_store = True

    def finish(self, tokens: Sequence[int]) -> None:
        """Add the sequence to the store."""
        assert self.store is not None
        self.store.add(np.asarray(tokens, dtype=np.int32))


def default_recycling_template(num_nodes: int = 6, k: int = 8) -> _core.TreeTemplate:
    """A ``num_nodes``-node Token Recycling template (root included) over candidate ranks ``< k``, chosen
    by :meth:`TreeTemplate.from_acceptance` from acceptance rates measured with the embedded model.

    The default size suits CPUs, where a forward of the embedded model over up to about 6 tokens costs
    about one plain step and every further 6 add 10-15% (``docs/generate.md``): 6 nodes expect about 1.73
    tokens per step. The paper's 81-node template (``TreeTemplate.token_recycling()``) suits GPUs,
    where a forward's cost barely depends on the tree size.
    """
    return _core.TreeTemplate.from_acceptance(_RECYCLING_ACCEPTANCE[:, :k], num_nodes)


class RecyclingDrafter:
    """Token Recycling (Luo et al. 2024): drafts from a ``[V, k]`` matrix of the target's own recent top-k
    predictions after each token, updated from every verification forward and kept across sequences.

    ``template`` defaults to :func:`default_recycling_template`. ``warm_start=True`` fills the still-empty
    rows of the prompt's tokens from the prompt's bigrams at the start of each sequence (rows learned from
    the model are kept); a list of token arrays warm-starts once from that corpus.
    """

    def __init__(
        self,
        k: int = 8,
        template: _core.TreeTemplate | None = None,
        *,
        warm_start: bool | Sequence[Any] = False,
    ) -> None:
        if k < 1:
            raise _core.InvalidInputError(f"k must be >= 1, got {k}")
        self.k = k
        self.template = template if template is not None else default_recycling_template(k=k)
        if self.template.num_candidates > k:
            raise _core.InvalidInputError(
                f"the template uses {self.template.num_candidates} candidates per node but k = {k}"
            )
        self._warm_start = warm_start
        self.recycler: _core.TokenRecycler | None = None
        # the prefill's logits after every prompt token fill the prompt tokens' rows before decoding starts
        self.wants_prompt_logits = True

    def begin(self, prompt: Sequence[int], vocab_size: int) -> None:
        """Create the matrix on first use (for the model's vocabulary); warm-start if asked."""
        if self.recycler is None or self.recycler.vocab_size != vocab_size:
            self.recycler = _core.TokenRecycler(vocab_size, self.k, self.template)
            if not isinstance(self._warm_start, bool):
                self.recycler.warm_start([np.asarray(seq, dtype=np.int32) for seq in self._warm_start])
        if self._warm_start is True:
            self.recycler.warm_start([np.asarray(prompt, dtype=np.int32)], overwrite=False)

    def propose(self, tokens: Sequence[int]) -> _core.DraftTree:
        """The template filled from the matrix, rooted at the last token."""
        assert self.recycler is not None, "begin() first"
        return self.recycler.propose(tokens[-1])

    def update(self, tree: _core.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        """Recycle the top-k of every scored node (nothing when ``logits`` is ``None``)."""
        assert self.recycler is not None, "begin() first"
        if logits is not None:
            recycle(self.recycler, tree.tokens, logits, self.k)

    def finish(self, tokens: Sequence[int]) -> None:
        """The matrix is kept for the next sequence."""


class AdedDrafter:
    """ADED (Liu et al. 2024): an adaptive tri-gram table with MCTS draft trees.

    ``table`` is a prebuilt :class:`~decodekit.TrigramTable` (e.g. from a corpus); without one, the table is
    built from the first prompt. Every prompt and every step's new tokens adapt it, so it improves across
    sequences when the same drafter is reused. ``seed`` makes the tree search reproducible.
    """

    def __init__(
        self,
        table: _core.TrigramTable | None = None,
        *,
        top_k: int = 12,
        max_nodes: int = 8,
        iterations: int = 64,
        rollout_depth: int = 4,
        seed: int = 0,
    ) -> None:
        if max_nodes < 1 or iterations < 1 or rollout_depth < 1 or top_k < 1:
            raise _core.InvalidInputError(
                "top_k, max_nodes, iterations and rollout_depth must be >= 1, got "
                f"{top_k}, {max_nodes}, {iterations}, {rollout_depth}"
            )
        self.table = table
        self.top_k = top_k
        self.max_nodes = max_nodes
        self.iterations = iterations
        self.rollout_depth = rollout_depth
        self._rng = _core.Rng(seed)
        self._last_two: list[int] = []

    def begin(self, prompt: Sequence[int], vocab_size: int) -> None:
        """Build the table from the prompt, or adapt the existing one to it."""
        ids = np.asarray(prompt, dtype=np.int32)
        if self.table is None:
            self.table = _core.TrigramTable.from_corpus([ids], self.top_k, vocab_size=vocab_size)
        else:
            self.table.adapt(ids)

    def propose(self, tokens: Sequence[int]) -> _core.DraftTree:
        """An MCTS draft after the last two tokens (root-only when there is just one)."""
        assert self.table is not None, "begin() first"
        self._last_two = [int(token) for token in tokens[-2:]]
        if len(tokens) < 2:
            return _core.DraftTree.chain(int(tokens[-1]), np.empty(0, dtype=np.int32))
        return self.table.propose(
            np.asarray(tokens[-2:], dtype=np.int32),
            max_nodes=self.max_nodes,
            iterations=self.iterations,
            rollout_depth=self.rollout_depth,
            rng=self._rng,
        )

    def update(self, tree: _core.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        """Adapt on the new tokens with the two tokens before them (the trigrams spanning the boundary)."""
        assert self.table is not None, "begin() first"
        self.table.adapt(np.asarray([*self._last_two, *new_tokens], dtype=np.int32))

    def finish(self, tokens: Sequence[int]) -> None:
        """The table is kept for the next sequence."""


# Token Recycling's template size inside the default MergedDrafter: smaller than on its own, since prompt
# lookup's chain already covers the likeliest continuation wherever the text repeats.
MERGED_RECYCLING_NODES = 4


class MergedDrafter:
    """Several drafters at once: their trees are merged into one (the union of their root paths, shared
    prefixes stored once), so one verification forward tries every proposal. Each drafter sees every
    update. The default, ``MergedDrafter()``, is Token Recycling (a 4-node template) plus prompt lookup:
    recycling drafts everywhere, prompt lookup adds long runs where the text repeats the prompt or
    itself."""

    def __init__(self, *drafters: Drafter) -> None:
        self.drafters: tuple[Drafter, ...] = drafters or (
            RecyclingDrafter(template=default_recycling_template(MERGED_RECYCLING_NODES)),
            PromptLookupDrafter(),
        )
        self.wants_prompt_logits = any(getattr(d, "wants_prompt_logits", False) for d in self.drafters)

    def begin(self, prompt: Sequence[int], vocab_size: int) -> None:
        """Start every drafter."""
        for drafter in self.drafters:
            drafter.begin(prompt, vocab_size)

    def propose(self, tokens: Sequence[int]) -> _core.DraftTree:
        """The union of the drafters' trees."""
        trees = [drafter.propose(tokens) for drafter in self.drafters]
        grown = [tree for tree in trees if tree.num_nodes > 1]
        if len(grown) <= 1:
            return grown[0] if grown else trees[0]
        paths = [path for tree in grown for path in _root_paths(tree)]
        return _core.DraftTree.from_paths(int(tokens[-1]), paths)

    def update(self, tree: _core.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        """Every drafter learns from the merged step."""
        for drafter in self.drafters:
            drafter.update(tree, logits, new_tokens)

    def finish(self, tokens: Sequence[int]) -> None:
        """Every drafter finishes."""
        for drafter in self.drafters:
            drafter.finish(tokens)


def _root_paths(tree: _core.DraftTree) -> list[list[int]]:
    """The token paths from the root (excluded) to every leaf."""
    parents = tree.parents.tolist()
    tokens = tree.tokens.tolist()
    return [node_path(parents, tokens, leaf) for leaf in tree.leaves.tolist()]


def node_path(parents: list[int], tokens: list[int], node: int) -> list[int]:
    """The tokens from the root's child down to ``node`` (root excluded; ``[]`` for the root), given a
    tree's ``parents`` and ``tokens`` as lists."""
    path = []
    while node > 0:
        path.append(tokens[node])
        node = parents[node]
    path.reverse()
    return path


DRAFTERS: dict[str, type] = {
    "prompt_lookup": PromptLookupDrafter,
    "ngram_store": NGramStoreDrafter,
    "recycling": RecyclingDrafter,
    "aded": AdedDrafter,
    "merged": MergedDrafter,
}


def make_drafter(drafter: str | Drafter | None) -> Drafter | None:
    """``None``, a drafter object (returned as is), or a fresh drafter of a registered name."""
    if drafter is None:
        return None
    if isinstance(drafter, str):
        factory = DRAFTERS.get(drafter)
        if factory is None:
            raise _core.InvalidInputError(
                f"unknown drafter {drafter!r}; choose one of {', '.join(sorted(DRAFTERS))} "
                "or pass a drafter object"
            )
        made: Drafter = factory()
        return made
    missing = [
        name
        for name in ("begin", "propose", "update", "finish")
        if not callable(getattr(drafter, name, None))
    ]
    if missing:
        raise _core.InvalidInputError(
            f"{type(drafter).__name__} is not a decodekit drafter: it lacks {', '.join(missing)} "
            "(see decodekit.drafters.Drafter)"
        )
    return drafter
