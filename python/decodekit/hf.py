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
