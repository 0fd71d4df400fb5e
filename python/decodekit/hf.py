"""Hugging Face transformers adapters (transformers and torch are optional: imported on first use)."""

from __future__ import annotations

from typing import Any

import numpy as np

from decodekit import _core
from decodekit.torch import _torch, apply_token_bitmask_


class GrammarLogitsProcessor:
    """Constrain ``model.generate`` to a grammar: ``model.generate(..., logits_processor=[processor])``.

    ``grammar`` is a :class:`~decodekit.Grammar` (compiled on the first call, for the tokenizer's
    vocabulary widened to the model's logits width) or a :class:`~decodekit.CompiledGrammar`. Works with
    any batch size and with beam search: each row keeps its own :class:`~decodekit.Matcher`, and every call
    compares the row's generated tokens with what its matcher has seen, rolling back and re-accepting
    where beams were reordered. The prompt is everything in ``input_ids`` at the first call; use a new
    processor for each ``generate`` call. A row whose last token breaks the grammar (which only happens
    when another processor or a forced token overrode the mask) gets an EOS-only mask.
    """

    def __init__(self, grammar: _core.Grammar | _core.CompiledGrammar, tokenizer: Any) -> None:
        if not isinstance(grammar, (_core.Grammar, _core.CompiledGrammar)):
            raise TypeError(f"grammar must be a Grammar or CompiledGrammar, got {type(grammar).__name__}")
        self._grammar = grammar
        self._tokenizer = tokenizer
        self._compiled: _core.CompiledGrammar | None = (
            grammar if isinstance(grammar, _core.CompiledGrammar) else None
        )
        self._prompt_len: int | None = None
        self._matchers: list[_core.Matcher] = []
        self._seen: list[list[int]] = []

    def _compile(self, width: int) -> _core.CompiledGrammar:
        if self._compiled is None:
            assert isinstance(self._grammar, _core.Grammar)
            vocab = _core.Vocabulary.from_hf(self._tokenizer)
            if width > vocab.size:
                vocab = _core.Vocabulary.from_hf(self._tokenizer, size=width)
            self._compiled = self._grammar.compile(vocab)
        if self._compiled.vocab.size > width:
            raise _core.InvalidInputError(
                f"the vocabulary has {self._compiled.vocab.size} ids but the scores only {width} columns"
            )
        return self._compiled

    def _sync(self, row: int, generated: list[int]) -> bool:
        """Bring row ``row``'s matcher to ``generated``; False when a token breaks the grammar."""
        matcher, seen = self._matchers[row], self._seen[row]
        common = 0
        for a, b in zip(seen, generated, strict=False):
            if a != b:
                break
            common += 1
        if common < len(seen):
            matcher.rollback(len(seen) - common)
            del seen[common:]
        for token in generated[common:]:
            if not matcher.accept_token(token):
                return False
            seen.append(token)
        return True

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Mask ``scores`` (float ``[batch, V]`` tensor) for the rows of ``input_ids`` (int ``[batch, L]``):
        disallowed tokens get ``-inf``. Returns the masked scores (in place when they are contiguous)."""
        torch = _torch()
        batch, width = scores.shape
        compiled = self._compile(width)
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        if len(self._matchers) != batch:
            self._matchers = [_core.Matcher(compiled) for _ in range(batch)]
            self._seen = [[] for _ in range(batch)]
        generated = input_ids[:, self._prompt_len :].tolist()
        healthy = [self._sync(row, generated[row]) for row in range(batch)]
        bitmask = np.empty((batch, (width + 31) // 32), dtype=np.int32)
        _core.fill_next_token_bitmask_batch(self._matchers, bitmask)
        words = bitmask.view(np.uint32)
        for row in (r for r in range(batch) if not healthy[r]):
            words[row] = 0
            for eos in compiled.vocab.eos_ids:
                words[row, eos // 32] |= np.uint32(1 << (eos % 32))
        if not scores.is_contiguous():
            scores = scores.contiguous()
        apply_token_bitmask_(scores, torch.from_numpy(bitmask))
        return scores


def _candidate_generator_base() -> type:
    from transformers.generation.candidate_generator import CandidateGenerator as Base

    return Base


def drafter_candidate_generator(drafter: Any, vocab_size: int, max_candidates: int = 10) -> Any:
    """A transformers ``CandidateGenerator`` that drafts with a :class:`decodekit.drafters.Drafter`.

    transformers' assisted generation verifies one chain per step, so a drafted tree is reduced to its
    first root-to-leaf path in node order (the drafters put their most likely candidate first), cut at
    ``max_candidates`` tokens. Batch size 1. The drafter sees the accepted tokens and, after each step, the
    chain with the model's scores for it (Token Recycling learns from those).
    """
    base = _candidate_generator_base()

    class DrafterCandidateGenerator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.drafter = drafter
            self.seen: list[int] | None = None
            self.chain: _core.DraftTree | None = None
            self.scores: Any = None

        def _sync(self, tokens: list[int]) -> None:
            if self.seen is None:
                self.drafter.begin(tokens, vocab_size)
                self.seen = list(tokens)
            elif tokens[: len(self.seen)] != self.seen:
                raise _core.InvalidInputError(
                    "the sequence was rewritten between steps (batch size must be 1)"
                )

        def get_candidates(self, input_ids: Any, **kwargs: Any) -> tuple[Any, None]:
            torch = _torch()
            if input_ids.shape[0] != 1:
                raise _core.InvalidInputError(f"drafting needs batch size 1, got {input_ids.shape[0]}")
            tokens = input_ids[0].tolist()
            self._sync(tokens)
            assert self.seen is not None
            if len(tokens) > len(self.seen):
                if self.chain is not None and self.scores is not None:
                    self.drafter.update(self.chain, self.scores, tokens[len(self.seen) :])
                else:  # the prompt's first token came from the prefill, which has no chain
                    root = _chain_of(self.seen[-1], [])
                    self.drafter.update(root, None, tokens[len(self.seen) :])
                self.seen = tokens
            tree = self.drafter.propose(tokens)
            chain = _first_path(tree)[:max_candidates]
            self.chain = _chain_of(tokens[-1], chain)
            if not chain:
                return input_ids, None
            extra = torch.tensor([chain], dtype=input_ids.dtype, device=input_ids.device)
            return torch.cat([input_ids, extra], dim=1), None

        def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: int) -> None:
            # scores [1, candidates + 1, V]: the model after the root and each candidate; handed to the
            # drafter with the accepted tokens at the next get_candidates call.
            if self.chain is not None and scores is not None:
                self.scores = scores[0, : self.chain.num_nodes].float()

    return DrafterCandidateGenerator()


def _first_path(tree: _core.DraftTree) -> list[int]:
    """The tokens of the tree's first root-to-leaf path in node order (root excluded)."""
    parents = tree.parents.tolist()
    tokens = tree.tokens.tolist()
    path: list[int] = []
    node = 0
    for child in range(1, len(parents)):
        if parents[child] == node:
            path.append(tokens[child])
            node = child
    return path


def _chain_of(root: int, tokens: list[int]) -> _core.DraftTree:
    return _core.DraftTree.chain(int(root), np.asarray(tokens, dtype=np.int32))


def generate_with_drafter(
    model: Any, input_ids: Any, drafter: Any, *, max_candidates: int = 10, **kwargs: Any
) -> Any:
    """``model.generate(input_ids, **kwargs)`` with candidates from a decodekit drafter (batch size 1).

    transformers has no public argument for a custom candidate generator, so this switches on assisted
    generation (``prompt_lookup_num_tokens``) and, for this one call, overrides the model's private
    ``_get_candidate_generator`` to return :func:`drafter_candidate_generator`. Greedy output is unchanged
    by the drafts; with ``do_sample=True`` transformers' own verification of deterministic candidates
    applies. ``drafter`` is a drafter object or a name as in :func:`decodekit.generate`. Prefer
    :func:`decodekit.generate`, which verifies whole draft trees.
    """
    from decodekit.drafters import make_drafter

    made = make_drafter(drafter)
    if made is None:
        raise _core.InvalidInputError("generate_with_drafter needs a drafter")
    if "assistant_model" in kwargs or "prompt_lookup_num_tokens" in kwargs:
        raise _core.InvalidInputError(
            "generate_with_drafter supplies the candidates: drop assistant_model/prompt_lookup_num_tokens"
        )
    width = int(model.get_output_embeddings().weight.shape[0])
    generator = drafter_candidate_generator(made, width, max_candidates)
    original = model.__dict__.get("_get_candidate_generator")
    model._get_candidate_generator = lambda *args, **kw: generator
    try:
        return model.generate(input_ids, prompt_lookup_num_tokens=max_candidates, **kwargs)
    finally:
        if original is None:
            del model._get_candidate_generator
        else:
            model._get_candidate_generator = original
