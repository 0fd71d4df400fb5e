"""``decodekit.generate``: speculative and constrained decoding with any torch causal LM (batch size 1).

Each step a drafter proposes a :class:`~decodekit.DraftTree` rooted at the last token; with a grammar, nodes
the grammar forbids are pruned and every node gets its token bitmask; the model scores the whole tree in
one forward (tree positions, a 4-D mask; a chain needs only the causal mask); verification accepts a root
path and emits one more token; the cache keeps only the accepted path's slots. Greedy decoding uses
:func:`~decodekit.verify_greedy`, whose output equals plain greedy decoding; sampling uses
:func:`~decodekit.verify_tree` (recursive rejection sampling), whose output is distributed exactly as
sampling from the (masked, tempered, top-k/top-p filtered) target.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from decodekit import _core
from decodekit.drafters import Drafter, make_drafter
from decodekit.grammar import allocate_token_bitmask
from decodekit.models import CausalLM, as_causal_lm
from decodekit.torch import _torch, apply_token_bitmask_

_PROMPT_LOGITS_ROWS = 1024


@dataclass
class GenerationStats:
    """Where a generation's time went and how much each step accepted.

    ``accepted`` holds the draft tokens accepted at each verification step (the step emitted one more)
    and ``drafted`` the draft tokens scored at each step (tree nodes besides the root, after grammar
    pruning); the prefill is not a step. ``model_seconds`` is time inside the model (forwards, cache
    compaction, copying logits to the host); ``decodekit_seconds`` is everything else in the loop
    (drafting, masks, verification, Python glue).
    """

    steps: int = 0
    accepted: list[int] = field(default_factory=list)
    drafted: list[int] = field(default_factory=list)
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    model_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def decodekit_seconds(self) -> float:
        """Loop time outside the model."""
        return max(self.total_seconds - self.model_seconds, 0.0)

    @property
    def tokens_per_second(self) -> float:
        """New tokens over the total time (prefill included)."""
        return self.new_tokens / self.total_seconds if self.total_seconds > 0 else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens emitted per verification step (accepted draft tokens + 1), over all steps."""
        return (sum(self.accepted) + len(self.accepted)) / len(self.accepted) if self.accepted else 0.0


@dataclass
class Generation:
    """The result of :func:`generate`: the new token ids, their text when a tokenizer was given, stats."""

    tokens: list[int]
    text: str | None
    stats: GenerationStats
    finish_reason: str = "length"


@dataclass
class _Settings:
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    eos: frozenset[int]
    stop: tuple[str, ...]


def generate(
    model: Any,
    input_ids: Any,
    *,
    max_new_tokens: int,
    drafter: str | Drafter | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    grammar: _core.Grammar | _core.CompiledGrammar | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    tokenizer: Any = None,
) -> Generation:
    """Continue ``input_ids`` with ``model``, optionally drafting, optionally under a grammar.

    ``model``: a transformers causal LM (wrapped in :class:`~decodekit.models.HFCausalLM`) or any
    :class:`~decodekit.models.CausalLM`. ``input_ids``: the prompt, a non-empty sequence, numpy array or
    tensor of ids (``[n]`` or ``[1, n]``), or a string when ``tokenizer`` is given. ``drafter``: ``None``
    (one token per step), a name (``"prompt_lookup"``, ``"ngram_store"``, ``"recycling"``, ``"aded"``) or a
    :class:`~decodekit.drafters.Drafter`. ``temperature=0`` is greedy (``top_k``/``top_p`` unused);
    otherwise tokens are sampled from the softmax at ``temperature`` restricted to the ``top_k`` most likely
    (0: all) and the ``top_p`` nucleus, with ``seed`` making the run reproducible. ``grammar`` restricts the
    output to its language (a :class:`~decodekit.Grammar` is compiled for ``tokenizer``'s vocabulary; a
    :class:`~decodekit.CompiledGrammar` must match the model's logits width). Generation stops after
    ``max_new_tokens`` tokens, after an EOS token (``eos_token_id``, else the model's generation config;
    the grammar's EOS ids too), which is kept in the output, or once the text contains a ``stop`` string
    (needs ``tokenizer``; the output ends with the token that completed it).

    Bad arguments raise :class:`~decodekit.InvalidInputError` before the model runs.
    """
    lm = as_causal_lm(model)
    prompt = _prompt_ids(input_ids, tokenizer, lm.vocab_size)
    settings = _settings(max_new_tokens, temperature, top_k, top_p, stop, tokenizer)
    compiled = _compiled_grammar(grammar, tokenizer, lm.vocab_size)
    eos = _eos_ids(eos_token_id, model, tokenizer)
    if compiled is not None:
        eos |= set(compiled.vocab.eos_ids)
    settings.eos = frozenset(eos)
    matcher = _core.Matcher(compiled) if compiled is not None else None
    draft = make_drafter(drafter)
    rng = _core.Rng(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
    run = _Run(lm, settings, draft, matcher, rng, tokenizer)
    return run.generate(prompt)


class _Run:
    """One generation's state: tokens, cache, matcher, drafter, stats."""

    def __init__(
        self,
        lm: CausalLM,
        settings: _Settings,
        drafter: Drafter | None,
        matcher: _core.Matcher | None,
        rng: _core.Rng,
        tokenizer: Any,
    ) -> None:
        self.torch = _torch()
        self.lm = lm
        self.settings = settings
        self.drafter = drafter
        self.matcher = matcher
        self.rng = rng
        self.tokenizer = tokenizer
        self.stats = GenerationStats()
        self.bitmask: npt.NDArray[np.int32] | None = None

    def generate(self, prompt: list[int]) -> Generation:
        torch = self.torch
        start = time.perf_counter()
        tokens = list(prompt)
        if self.drafter is not None:
            self.drafter.begin(prompt, self.lm.vocab_size)
        with torch.inference_mode():
            cache = self.lm.new_cache()
            first = self._prefill(prompt, cache)
            self.stats.prefill_seconds = time.perf_counter() - start
            reason = self._emit(tokens, [first], len(prompt))
            while reason is None:
                reason = self._emit(tokens, self._step(tokens, cache), len(prompt))
        if self.drafter is not None:
            self.drafter.finish(tokens)
        self.stats.total_seconds = time.perf_counter() - start
        output = tokens[len(prompt) :]
        self.stats.new_tokens = len(output)
        text = self.tokenizer.decode(output) if self.tokenizer is not None else None
        return Generation(tokens=output, text=text, stats=self.stats, finish_reason=reason)

    def _prefill(self, prompt: list[int], cache: Any) -> int:
        """Score the prompt, append it to the cache and choose the first new token."""
        torch = self.torch
        device = self.lm.device
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        positions = torch.arange(len(prompt), dtype=torch.long, device=device)[None]
        began = time.perf_counter()
        prefill = getattr(self.lm, "prefill", None)
        # a drafter that learns from the prompt gets the logits after its last (at most) 1024 tokens
        rows = 1
        if self.drafter is not None and getattr(self.drafter, "wants_prompt_logits", False):
            rows = min(len(prompt), _PROMPT_LOGITS_ROWS)
        if callable(prefill):
            logits = prefill(ids, positions, cache, rows)[-rows:]
        else:
            logits = self.lm.forward(ids, positions, None, cache)[-rows:]
        self.stats.model_seconds += time.perf_counter() - began
        root = _root_only(prompt[-1])
        masks = self._grammar_masks(root) if self.matcher is not None else None
        verification = self._verify(root, logits[-1:], masks)
        first = int(verification.tokens[0])
        if self.drafter is not None:
            scored = prompt[-rows:]
            chain = _core.DraftTree.chain(scored[0], np.asarray(scored[1:], dtype=np.int32))
            self.drafter.update(chain, logits, [first])
        return first

    def _step(self, tokens: list[int], cache: Any) -> list[int]:
        """One draft-score-verify step; returns the emitted tokens and compacts the cache."""
        torch = self.torch
        cached = len(tokens) - 1
        tree = self.drafter.propose(tokens) if self.drafter is not None else _root_only(tokens[-1])
        if int(tree.tokens[0]) != tokens[-1]:
            raise _core.InvalidInputError(
                f"the drafter proposed a tree rooted at token {int(tree.tokens[0])}, but the last token is "
                f"{tokens[-1]}: a draft tree's root must be the last token of the sequence"
            )
        masks = None
        if self.matcher is not None:
            tree, masks = self._prune(tree)
        device = self.lm.device
        ids = torch.from_numpy(tree.tokens.astype(np.int64)).to(device)[None]
        positions = torch.from_numpy(tree.positions(cached).astype(np.int64)).to(device)[None]
        mask = None
        if not _is_chain(tree):
            mask = torch.from_numpy(tree.attention_mask_with_prefix(cached)).to(device)[None, None]
        began = time.perf_counter()
        logits = self.lm.forward(ids, positions, mask, cache)
        self.stats.model_seconds += time.perf_counter() - began
        verification = self._verify(tree, logits, masks)
        keep = np.concatenate(
            [np.arange(cached, dtype=np.int64), cached + verification.kv_keep.astype(np.int64)]
        )
        began = time.perf_counter()
        self.lm.keep(cache, keep)
        self.stats.model_seconds += time.perf_counter() - began
        emitted: list[int] = verification.tokens.tolist()
        if self.drafter is not None:
            self.drafter.update(tree, logits, emitted)
        self.stats.steps += 1
        self.stats.accepted.append(verification.num_accepted)
        self.stats.drafted.append(tree.num_nodes - 1)
        return emitted

    def _verify(self, tree: _core.DraftTree, logits: Any, masks: npt.NDArray[np.int32] | None) -> Any:
        """Mask, then verify greedily or by rejection sampling."""
        if masks is not None:
            apply_token_bitmask_(logits, masks)
        settings = self.settings
        if settings.temperature == 0.0:
            began = time.perf_counter()
            targets = logits.argmax(dim=-1).to("cpu").numpy()
            self.stats.model_seconds += time.perf_counter() - began
            return _core.verify_greedy(tree, targets)
        began = time.perf_counter()
        host = logits.to(device="cpu", dtype=self.torch.float32).numpy()
        self.stats.model_seconds += time.perf_counter() - began
        if settings.top_k > 0 or settings.top_p < 1.0:
            keep = _core.sampling_mask(
                host, temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p
            )
            host = np.where(keep, host, np.float32(-np.inf))
        probs = _core.softmax(host, settings.temperature)
        return _core.verify_tree(tree, probs, rng=self.rng)

    def _prune(self, tree: _core.DraftTree) -> tuple[_core.DraftTree, npt.NDArray[np.int32]]:
        """Drop the nodes the grammar forbids (with their subtrees); one bitmask row per kept node."""
        grammatical, bitmask = self._fill_tree_masks(tree)
        if grammatical.all():
            return tree, bitmask
        kept = np.flatnonzero(grammatical)
        index = {int(old): new for new, old in enumerate(kept)}
        tokens, parents = tree.tokens, tree.parents
        tree = _core.DraftTree(
            tokens[kept],
            np.asarray([index[int(parents[node])] if node else -1 for node in kept], dtype=np.int32),
        )
        return tree, bitmask[kept]

    def _grammar_masks(self, tree: _core.DraftTree) -> npt.NDArray[np.int32]:
        """Row ``i``: the grammar's mask after node ``i``'s path (all nodes known to be grammatical)."""
        return self._fill_tree_masks(tree)[1]

    def _fill_tree_masks(self, tree: _core.DraftTree) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32]]:
        """Which nodes are grammatical, and row ``i``: the mask after node ``i``'s path (zero if not)."""
        matcher = self.matcher
        assert matcher is not None
        count = tree.num_nodes
        if self.bitmask is None or self.bitmask.shape[0] < count:
            self.bitmask = allocate_token_bitmask(max(count, 16), self.lm.vocab_size)
        bitmask = self.bitmask[:count]
        grammatical = matcher.fill_draft_tree_bitmasks(tree, bitmask)
        return grammatical, bitmask

    def _emit(self, tokens: list[int], emitted: list[int], prompt_len: int) -> str | None:
        """Append emitted tokens up to the limits; the finish reason once generation must stop."""
        settings = self.settings
        room = settings.max_new_tokens - (len(tokens) - prompt_len)
        reason = None
        taken: list[int] = []
        for token in emitted[:room]:
            taken.append(token)
            if token in settings.eos:
                reason = "eos"
                break
        tokens.extend(taken)
        if self.matcher is not None:
            self.matcher.accept_tokens(np.asarray(taken, dtype=np.int32))
        if reason is None and settings.stop and self._stopped(tokens, prompt_len, len(taken)):
            reason = "stop"
        if reason is None and len(tokens) - prompt_len >= settings.max_new_tokens:
            reason = "length"
        return reason

    def _stopped(self, tokens: list[int], prompt_len: int, count: int) -> bool:
        """Whether a stop string appeared; if so, cut ``tokens`` after the token that completed it."""
        output = tokens[prompt_len:]
        for end in range(len(output) - count + 1, len(output) + 1):
            text = self.tokenizer.decode(output[:end])
            if any(stop in text for stop in self.settings.stop):
                del tokens[prompt_len + end :]
                return True
        return False


def _root_only(token: int) -> _core.DraftTree:
    return _core.DraftTree.chain(int(token), np.empty(0, dtype=np.int32))


def _is_chain(tree: _core.DraftTree) -> bool:
    parents = tree.parents
    return bool(np.array_equal(parents, np.arange(-1, len(parents) - 1, dtype=parents.dtype)))


def _settings(
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    stop: str | Sequence[str] | None,
    tokenizer: Any,
) -> _Settings:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise _core.InvalidInputError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise _core.InvalidInputError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise _core.InvalidInputError(f"top_k must be an int >= 0 (0: no limit), got {top_k!r}")
    if not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise _core.InvalidInputError(f"top_p must be in (0, 1], got {top_p!r}")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if any(not isinstance(item, str) or not item for item in stops):
        raise _core.InvalidInputError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    if stops and tokenizer is None:
        raise _core.InvalidInputError("stop strings need a tokenizer= to decode the output")
    return _Settings(max_new_tokens, float(temperature), top_k, float(top_p), frozenset(), stops)


def _prompt_ids(input_ids: Any, tokenizer: Any, vocab_size: int) -> list[int]:
    """The prompt as a list of ints in ``[0, vocab_size)``."""
    if isinstance(input_ids, str):
        if tokenizer is None:
            raise _core.InvalidInputError("a text prompt needs tokenizer=; or pass token ids")
        input_ids = tokenizer(input_ids, add_special_tokens=False)["input_ids"]
    if hasattr(input_ids, "detach"):  # a torch tensor
        input_ids = input_ids.detach().to("cpu").numpy()
    array = np.asarray(input_ids)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0:
        raise _core.InvalidInputError(
            "input_ids must be a non-empty sequence of ids ([n] or [1, n]; batch size 1), "
            f"got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise _core.InvalidInputError(f"input_ids must hold integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        raise _core.InvalidInputError(
            f"input_ids must lie in [0, {vocab_size}) (the model's vocabulary), got ids in [{low}, {high}]"
        )
    return [int(token) for token in array]


def _compiled_grammar(
    grammar: _core.Grammar | _core.CompiledGrammar | None, tokenizer: Any, vocab_size: int
) -> _core.CompiledGrammar | None:
    if grammar is None:
        return None
    if isinstance(grammar, _core.Grammar):
        if tokenizer is None:
            raise _core.InvalidInputError(
                "a Grammar needs tokenizer= to be compiled for the model's vocabulary "
                "(or pass a CompiledGrammar)"
            )
        compiled = grammar.compile(_core.Vocabulary.from_hf(tokenizer, size=vocab_size))
    elif isinstance(grammar, _core.CompiledGrammar):
        compiled = grammar
    else:
        raise _core.InvalidInputError(
            f"grammar must be a Grammar or CompiledGrammar, got {type(grammar).__name__}"
        )
    if compiled.vocab.size != vocab_size:
        raise _core.InvalidInputError(
            f"the grammar was compiled for a vocabulary of {compiled.vocab.size} ids but the model's "
            f"logits have {vocab_size}: compile it with Vocabulary(..., size={vocab_size})"
        )
    return compiled


def _eos_ids(eos_token_id: int | Sequence[int] | None, model: Any, tokenizer: Any) -> set[int]:
    if eos_token_id is None:
        config = getattr(model, "generation_config", None)
        eos_token_id = getattr(config, "eos_token_id", None)
        if eos_token_id is None and tokenizer is not None:
            eos_token_id = getattr(tokenizer, "eos_token_id", None)
    if eos_token_id is None:
        return set()
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if any(isinstance(token, bool) or not isinstance(token, (int, np.integer)) or token < 0 for token in ids):
        raise _core.InvalidInputError(
            f"eos_token_id must be an id >= 0 or a list of them, got {eos_token_id!r}"
        )
    return {int(token) for token in ids}
