"""Regex-constrained decoding through two anchor libraries, llguidance and outlines-core, behind one API.

Both adapters take the same :class:`AnchorVocab` (the byte string of every token id, the EOS id and the
special ids) and the same regex, and expose the same four operations: compile (the constructor),
:meth:`fill_bitmask` (packed int32 row, bit ``j`` of word ``w`` = token ``32 * w + j``, little-endian),
:meth:`consume` and :meth:`rollback`. The wanted semantics is a *full match*: every generated text must be
a prefix of a string of the language, and EOS is allowed exactly when the text so far is in the language.

How each library is driven
--------------------------
* **llguidance** (:class:`LlguidanceRegex`): an ``LLTokenizer`` is built once per vocabulary from a
  ``TokenizerWrapper`` over the raw token bytes (special ids are passed as ``special_token_ids``, which
  llguidance prefixes with its 0xFF marker byte, so no regex can ever produce them). llguidance wants a
  ``tokenize`` callback; it gets a greedy longest-match tokenizer over the non-special token bytes (the
  adapter never calls an llguidance path that uses it, see below). The grammar is the lark grammar
  ``start: /<regex>/`` that ``LLMatcher.grammar_from_regex`` also builds (``regex_to_lark`` escapes
  ``/``), preceded by ``%llguidance {"no_forcing": true}``. Masks are written by
  ``llguidance.numpy.fill_next_token_bitmask`` (``LLMatcher.unsafe_compute_mask_ptr``) straight into the
  caller's row.
* **outlines-core** (:class:`OutlinesRegex`): a ``Vocabulary(eos_id, {bytes: [ids]})`` is built once per
  vocabulary from every id that is neither special nor empty (outlines refuses the EOS id in the map and
  has no notion of other special tokens, so leaving them out is how they stay forbidden). Compile is
  ``Index(regex, vocabulary)``; the state lives in a ``Guide(index, max_rollback)``; masks are written by
  ``Guide.write_mask_into`` (what ``outlines_core.kernels.numpy.fill_next_token_bitmask`` calls).

Why ``no_forcing`` (llguidance)
-------------------------------
A tokenizer built from a ``TokenizerWrapper`` reports itself canonical (``LLTokenizer.is_canonical``), and
then ``LLMatcher`` *forces bytes*: when the grammar admits only one continuation (after ``t`` in
``(true|false|null)``, ``rue`` is forced) it tokenizes the forced bytes with the callback and the mask
becomes the single canonical fast-forward token (``rue``), forbidding ``r`` and ``ru`` although they are
valid prefixes. That is a tokenization policy, not the language, and it would depend on our greedy
callback. ``no_forcing`` switches it off: with it the llguidance mask is the set of all tokens that keep
the text a prefix of the language. Consequently the tokenize callback is never used for masks.

Known semantic differences between the two libraries
----------------------------------------------------
* **Alternation and lazy quantifiers (outlines-core).** outlines-core compiles with regex-automata's
  dense DFA under leftmost-first (Perl) match semantics: once a higher-priority branch has matched, the
  lower-priority ones are dropped. Strings reachable only through such a branch are not generable:
  ``(a|ab)`` and ``(a|ab)c?`` forbid ``ab``, ``a+?`` allows only ``a``, while ``(ab|a)`` and ``(a|ab)c``
  allow everything. llguidance (derivre, regex derivatives) implements the plain regular language; lazy
  quantifiers are accepted and behave like greedy ones (``a+?`` = ``a+``).
* **Tokens that end one byte past a match (outlines-core).** regex-automata reports a match one byte
  late (a DFA state is a "match state" when the text *before* its last byte matched). ``Index`` keeps a
  token only if its end state is not a match state or fully matches at end of input, so a token whose
  last byte is the first byte after a match point, and whose text is not itself a match, is dropped.
  Examples: with ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` outlines forbids ``.`` after ``-3`` and ``1.`` at the
  start; with the e-mail regex ``.``, ``-`` and digits after ``x@example.com``; with ``\\d+`` the lone
  UTF-8 lead byte of a second non-ASCII digit; with ``(ab)*`` (empty match at the start) the token ``a``
  as first token. llguidance allows all of them. Larger tokens still reach
  these strings (``.5`` after ``1`` is allowed), but with a single-byte vocabulary outlines cannot
  produce ``1.5`` at all. Regexes with no match point before the end (``\\d{4}-\\d{2}-\\d{2}``,
  UUIDs, quoted strings, ``(true|false|null)``) are unaffected.
* **Dialect.** Both parse with Rust ``regex-syntax``, Unicode on: ``\\d``, ``\\w``, ``\\s``, ``\\p{..}``
  are Unicode classes (``\\d`` also admits e.g. Arabic-Indic digits, unlike ``[0-9]``), ``.`` excludes
  ``\\n``, ``(?i)`` works, and both operate on UTF-8 bytes (tokens that are a partial UTF-8 sequence are
  allowed when the sequence can still be completed). Anchors differ: llguidance accepts ``^`` / ``$``
  (no-ops at the ends of the full match), outlines-core fails to build an index for ``^a$`` ("anchored
  universal start state doesn't exist"). Neither supports ``\\b`` or look-around.
* **EOS and special tokens.** Both allow EOS exactly in accepting states and, once the text can no
  longer be extended, EOS only. Neither library can be trusted to *consume* EOS, so both adapters keep
  EOS to themselves: ``consume(EOS)`` succeeds iff the library says the state accepts (llguidance
  ``is_accepting``, outlines ``Guide.is_finished``), the library state is left as it is, the mask is then
  ``{EOS}`` (llguidance's own post-EOS mask) and every further ``consume`` fails; ``rollback`` undoes the
  EOS first. Reasons: outlines' ``Guide.advance(EOS)`` raises (``Index.next_state`` returns ``None`` for
  EOS); llguidance's ``consume_token(EOS)`` in an accepting state that cannot be extended (``\\d{4}``
  after ``2024``) stops the matcher without recording the token, so a later ``rollback(1)`` removes the
  previous *real* token, and ``validate_tokens([EOS])`` returns 0 there. Special ids other than EOS
  are never allowed by either. Tokens with empty bytes are left out of the outlines
  vocabulary (they would otherwise be allowed in every state); llguidance never allows them.
* **Lazy vs eager compile.** ``Index(...)`` is eager: it walks every reachable DFA state against the
  whole vocabulary, so construction cost grows with (states x vocabulary bytes) and each mask is a lookup
  and bit-set over the allowed ids. ``LLMatcher(...)`` only compiles the grammar; the lexer DFA is built
  lazily and each mask walks the token trie (with the default "slices" shortcuts), so the first masks of a
  state are slower and construction is cheap. Unicode classes inflate outlines' DFA: on the Llama 3
  vocabulary ``\\d{4}-\\d{2}-\\d{2}`` takes about a second to index. Benchmarks should time compile and
  masks separately and build the per-vocabulary objects (:func:`llguidance_tokenizer`,
  :func:`outlines_vocabulary`) beforehand.
* **Rollback.** llguidance can roll back any number of consumed tokens; outlines keeps only the last
  ``max_rollback`` states (constructor argument here). Both adapters raise ``ValueError`` beyond that.
* **Errors.** A token that is not allowed leaves both adapters unchanged (``consume`` returns False): for
  llguidance the token is checked with ``validate_tokens`` first, because a failed ``consume_token``
  puts the matcher into a permanent error state (as does ``rollback`` past the start, which the adapter
  refuses with ``ValueError``).

Both libraries are optional: they are imported when an adapter is first built, so this module imports
without them.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import llguidance
    import outlines_core

__all__ = [
    "AnchorVocab",
    "LlguidanceGrammar",
    "LlguidanceRegex",
    "OutlinesRegex",
    "anchor_versions",
    "bitmask_to_ids",
    "llguidance_grammar",
    "llguidance_tokenizer",
    "load_tiktoken_bytes",
    "outlines_vocabulary",
]

Int32Array = npt.NDArray[np.int32]


def load_tiktoken_bytes(path: str) -> list[bytes]:
    """Parse a tiktoken rank file (``<base64 token> <rank>`` per line); index ``i`` is rank ``i``.

    Ranks must be exactly ``0..n-1`` (in any order); blank lines are ignored.
    """
    ranked: dict[int, bytes] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<base64> <rank>', got {line!r}")
            rank = int(parts[1])
            if rank in ranked:
                raise ValueError(f"{path}:{lineno}: duplicate rank {rank}")
            ranked[rank] = base64.b64decode(parts[0])
    if sorted(ranked) != list(range(len(ranked))):
        raise ValueError(f"{path}: ranks are not contiguous from 0")
    return [ranked[i] for i in range(len(ranked))]


class AnchorVocab:
    """The common input of both adapters: the bytes of every token id, the EOS id and the special ids.

    ``special_ids`` always contains ``eos_id``. Special tokens are never produced by a grammar, except EOS
    in an accepting state. The per-library objects built from a vocabulary (llguidance's ``LLTokenizer``,
    outlines' ``Vocabulary``) are cached on it, so build them once before timing compiles.
    """

    def __init__(self, token_bytes: Sequence[bytes], eos_id: int, special_ids: Iterable[int] = ()) -> None:
        self.token_bytes: list[bytes] = [bytes(t) for t in token_bytes]
        self.eos_id: int = int(eos_id)
        self.special_ids: set[int] = {int(i) for i in special_ids} | {self.eos_id}
        n = len(self.token_bytes)
        bad = [i for i in self.special_ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"special/eos ids out of range [0, {n}): {sorted(bad)}")
        self._greedy_index: dict[bytes, int] | None = None
        self._greedy_max_len = 0
        self._llg_tokenizer: Any = None
        self._oc_vocabulary: Any = None

    @classmethod
    def from_tiktoken(cls, path: str, special_tokens: Sequence[bytes | str], eos: bytes | str) -> AnchorVocab:
        """Ranks of a tiktoken file, then ``special_tokens`` at ids ``n_ranks, n_ranks + 1, ...``.

        ``eos`` names one of ``special_tokens``.
        """
        ranks = load_tiktoken_bytes(path)
        specials = [s.encode() if isinstance(s, str) else bytes(s) for s in special_tokens]
        eos_b = eos.encode() if isinstance(eos, str) else bytes(eos)
        if eos_b not in specials:
            raise ValueError(f"eos {eos_b!r} is not among the special tokens")
        n = len(ranks)
        return cls(ranks + specials, n + specials.index(eos_b), range(n, n + len(specials)))

    @property
    def vocab_size(self) -> int:
        """Number of token ids ``V``."""
        return len(self.token_bytes)

    @property
    def mask_words(self) -> int:
        """Length ``ceil(V / 32)`` of one packed int32 mask row."""
        return (self.vocab_size + 31) // 32

    def new_bitmask(self) -> Int32Array:
        """A zeroed int32 mask row of length :attr:`mask_words`."""
        return np.zeros(self.mask_words, dtype=np.int32)

    def greedy_tokenize(self, data: bytes, *, strict: bool = True) -> list[int]:
        """Tokenize ``data`` by greedy longest match over the non-special, non-empty tokens.

        This is not BPE. A byte that starts no token raises ``ValueError`` (``strict``) or is skipped.
        Among ids with identical bytes the smallest wins.
        """
        if self._greedy_index is None:
            index: dict[bytes, int] = {}
            for i, t in enumerate(self.token_bytes):
                if t and i not in self.special_ids:
                    index.setdefault(t, i)
            self._greedy_index = index
            self._greedy_max_len = max((len(t) for t in index), default=0)
        index = self._greedy_index
        out: list[int] = []
        pos, n = 0, len(data)
        while pos < n:
            for length in range(min(self._greedy_max_len, n - pos), 0, -1):
                tok = index.get(data[pos : pos + length])
                if tok is not None:
                    out.append(tok)
                    pos += length
                    break
            else:
                if strict:
                    raise ValueError(f"byte {data[pos : pos + 1]!r} at offset {pos} starts no token")
                pos += 1
        return out


def bitmask_to_ids(mask: npt.NDArray[np.int32], vocab_size: int) -> npt.NDArray[np.int64]:
    """The sorted token ids whose bit is set in a packed int32 row (bits at ids >= ``vocab_size`` ignored)."""
    bits = np.unpackbits(np.ascontiguousarray(mask).view(np.uint8), bitorder="little")[:vocab_size]
    return np.flatnonzero(bits)


def _check_row(out: np.ndarray, vocab: AnchorVocab) -> None:
    if out.dtype != np.int32 or out.ndim != 1 or out.size != vocab.mask_words:
        raise ValueError(
            f"mask row must be int32 of shape ({vocab.mask_words},), got {out.dtype} {tuple(out.shape)}"
        )
    if not out.flags["C_CONTIGUOUS"] or not out.flags["WRITEABLE"]:
        raise ValueError("mask row must be C-contiguous and writeable")


# ---------------------------------------------------------------------------------------------- llguidance


class _GreedyCallback:
    """The tokenizer object llguidance's ``TokenizerWrapper`` expects (attributes + ``__call__``)."""

    def __init__(self, vocab: AnchorVocab) -> None:
        self.tokens = vocab.token_bytes
        self.eos_token_id = vocab.eos_id
        self.bos_token_id = None
        self.special_token_ids = sorted(vocab.special_ids)
        self._vocab = vocab

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        # Lenient: this runs inside llguidance (a Python exception there is a Rust panic). It is never
        # used for masks here (no_forcing), only by llguidance's own tokenize helpers.
        return self._vocab.greedy_tokenize(data, strict=False)


def llguidance_tokenizer(vocab: AnchorVocab) -> llguidance.LLTokenizer:
    """Build (once, cached on ``vocab``) the ``LLTokenizer`` over the raw token bytes of ``vocab``."""
    if vocab._llg_tokenizer is None:
        import llguidance

        tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_GreedyCallback(vocab)))
        if tokenizer.vocab_size != vocab.vocab_size:
            raise RuntimeError(f"llguidance vocab size {tokenizer.vocab_size} != {vocab.vocab_size}")
        vocab._llg_tokenizer = tokenizer
    cached: llguidance.LLTokenizer = vocab._llg_tokenizer
    return cached


def llguidance_grammar(pattern: str) -> str:
    """The lark grammar the llguidance adapter compiles: ``start: /pattern/`` with forcing switched off."""
    import llguidance

    return '%llguidance {"no_forcing": true}\nstart: /' + llguidance.regex_to_lark(pattern) + "/\n"


class LlguidanceGrammar:
    """Any llguidance grammar (lark text or a serialized ``TopLevelGrammar``) driven by ``LLMatcher``, with
    the EOS and error handling described in the module docstring. :class:`LlguidanceRegex` and the
    JSON-schema adapter of :mod:`bench.reference.json_anchors` only differ in the grammar text."""

    def __init__(
        self,
        vocab: AnchorVocab,
        grammar: str,
        *,
        limits: llguidance.LLParserLimits | None = None,
        what: str | None = None,
    ) -> None:
        """Compile ``grammar`` (the ``LLTokenizer`` for ``vocab`` is built first if not cached yet).

        ``what`` names the source (pattern, schema) in the error raised when llguidance rejects it.
        """
        import llguidance
        from llguidance.numpy import fill_next_token_bitmask

        self.vocab = vocab
        self.grammar = grammar
        self._fill = fill_next_token_bitmask
        tokenizer = llguidance_tokenizer(vocab)
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0, limits=limits)
        if self._matcher.is_error():
            source = grammar if what is None else what
            raise ValueError(f"llguidance rejected {source!r}: {self._matcher.get_error()}")
        self._n_consumed = 0
        self._ended = False

    @property
    def num_consumed(self) -> int:
        """Tokens consumed and not rolled back (EOS included)."""
        return self._n_consumed

    def is_accepting(self) -> bool:
        """Whether EOS would be accepted now (the text so far is in the language and EOS is not yet in)."""
        return not self._ended and self._matcher.is_accepting()

    def fill_bitmask(self, out: Int32Array) -> None:
        """Write the allowed-token mask of the current state into the int32 row ``out``."""
        _check_row(out, self.vocab)
        if self._ended:  # what llguidance's own mask is after EOS: {EOS} (every consume fails)
            _eos_only(out, self.vocab.eos_id)
            return
        self._fill(self._matcher, out.reshape(1, -1))

    def consume(self, token: int) -> bool:
        """Advance by ``token``; return False (state unchanged) if it is not allowed."""
        if not 0 <= token < self.vocab.vocab_size or self._ended:
            return False
        if token == self.vocab.eos_id:
            # EOS stays in the adapter (see the module docstring): allowed iff the matcher is accepting,
            # which is how llguidance's mask decides it.
            if not self._matcher.is_accepting():
                return False
            self._ended = True
        else:
            if self._matcher.validate_tokens([token]) != 1:
                return False
            if not self._matcher.consume_token(token):  # pragma: no cover - validate_tokens said yes
                raise RuntimeError(f"llguidance: consume_token failed: {self._matcher.get_error()}")
        self._n_consumed += 1
        return True

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` consumed tokens."""
        if not 0 <= n <= self._n_consumed:
            raise ValueError(f"cannot roll back {n} of {self._n_consumed} consumed tokens")
        if n == 0:
            return
        steps = n - 1 if self._ended else n
        if steps and not self._matcher.rollback(steps):
            raise RuntimeError(f"llguidance: rollback failed: {self._matcher.get_error()}")
        self._ended = False
        self._n_consumed -= n


class LlguidanceRegex(LlguidanceGrammar):
    """Full-match regex constraint driven by llguidance's ``LLMatcher`` (see the module docstring)."""

    def __init__(
        self, vocab: AnchorVocab, pattern: str, *, limits: llguidance.LLParserLimits | None = None
    ) -> None:
        """Compile ``pattern`` (the ``LLTokenizer`` for ``vocab`` is built first if not cached yet)."""
        self.pattern = pattern
        super().__init__(vocab, llguidance_grammar(pattern), limits=limits, what=pattern)


def _eos_only(out: Int32Array, eos_id: int) -> None:
    out.fill(0)
    out.view(np.uint32)[eos_id // 32] = np.uint32(1 << (eos_id % 32))


# ------------------------------------------------------------------------------------------- outlines-core


def outlines_vocabulary(vocab: AnchorVocab) -> outlines_core.Vocabulary:
    """Build (once, cached on ``vocab``) the outlines ``Vocabulary`` of the non-special, non-empty ids."""
    if vocab._oc_vocabulary is None:
        import outlines_core

        by_bytes: dict[bytes, list[int]] = {}
        for i, t in enumerate(vocab.token_bytes):
            if t and i not in vocab.special_ids:
                by_bytes.setdefault(t, []).append(i)
        vocab._oc_vocabulary = outlines_core.Vocabulary(vocab.eos_id, by_bytes)
    return vocab._oc_vocabulary


class AdapterKeepsEos(abc.ABC):
    """EOS bookkeeping for the adapters whose library cannot be trusted to consume EOS (see the module
    docs): ``consume(EOS)`` succeeds iff the library says the text is complete, the library state is left
    as it is, the mask is then ``{EOS}`` and every further ``consume`` fails; ``rollback`` undoes the EOS
    first. Subclasses set ``vocab`` and provide ``_complete``, ``_fill``, ``_advance`` and ``_rewind``."""

    vocab: AnchorVocab
    _n_consumed = 0
    _ended = False

    @abc.abstractmethod
    def _complete(self) -> bool:
        """Whether the text so far is complete in the library."""

    @abc.abstractmethod
    def _fill(self, out: Int32Array) -> None:
        """Write the library mask into ``out``."""

    @abc.abstractmethod
    def _advance(self, token: int) -> bool:
        """Advance the library by a non-EOS token; False (unchanged) if refused."""

    @abc.abstractmethod
    def _rewind(self, steps: int) -> None:
        """Roll the library back by ``steps`` non-EOS tokens."""

    @property
    def num_consumed(self) -> int:
        """Tokens consumed and not rolled back (EOS included)."""
        return self._n_consumed

    def is_accepting(self) -> bool:
        """Whether EOS would be accepted now (the text so far is in the language and EOS is not yet in)."""
        return not self._ended and self._complete()

    def fill_bitmask(self, out: Int32Array) -> None:
        """Write the allowed-token mask of the current state into the int32 row ``out``."""
        _check_row(out, self.vocab)
        if self._ended:  # mirror llguidance after EOS: the mask is {EOS}, every consume fails
            _eos_only(out, self.vocab.eos_id)
            return
        self._fill(out)

    def consume(self, token: int) -> bool:
        """Advance by ``token``; return False (state unchanged) if it is not allowed."""
        if not 0 <= token < self.vocab.vocab_size or self._ended:
            return False
        if token == self.vocab.eos_id:
            if not self._complete():
                return False
            self._ended = True
        elif not self._advance(token):  # a refused token leaves the library state as it was
            return False
        self._n_consumed += 1
        return True

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` consumed tokens."""
        if not 0 <= n <= self._n_consumed:
            raise ValueError(f"cannot roll back {n} of {self._n_consumed} consumed tokens")
        if n == 0:
            return
        steps = n - 1 if self._ended else n
        if steps:
            self._rewind(steps)
        self._ended = False
        self._n_consumed -= n


class OutlinesRegex(AdapterKeepsEos):
    """Full-match regex constraint driven by outlines-core's ``Index`` and ``Guide`` (see above)."""

    def __init__(self, vocab: AnchorVocab, pattern: str, *, max_rollback: int = 1024) -> None:
        """Compile ``pattern`` into an ``Index`` (the ``Vocabulary`` is built first if not cached yet)."""
        import outlines_core

        self.vocab = vocab
        self.pattern = pattern
        try:
            self.index = outlines_core.Index(pattern, outlines_vocabulary(vocab))
        except Exception as e:  # outlines raises ValueError or its own error types
            raise ValueError(f"outlines-core rejected {pattern!r}: {e}") from e
        self._guide = outlines_core.Guide(self.index, max_rollback=max_rollback)
        self._max_rollback = max_rollback

    def _complete(self) -> bool:
        return bool(self._guide.is_finished())

    def _fill(self, out: Int32Array) -> None:
        self._guide.write_mask_into(out.ctypes.data, out.size, out.itemsize)

    def _advance(self, token: int) -> bool:
        try:  # Guide cannot advance on EOS; the adapter keeps it (see AdapterKeepsEos)
            self._guide.advance(token, return_tokens=False)
        except (ValueError, OverflowError):  # no transition (the guide's state is left as it was)
            return False
        return True

    def _rewind(self, steps: int) -> None:
        # at most `max_rollback` non-EOS tokens are remembered
        if steps > self._guide.get_allowed_rollback():
            kept = self._max_rollback
            raise ValueError(f"outlines Guide keeps only {kept} states; cannot roll back {steps}")
        self._guide.rollback_state(steps)


def anchor_versions() -> dict[str, str]:
    """Installed versions of both anchors (``"missing"`` when not installed), for benchmark reports."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("llguidance", "outlines-core"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out
