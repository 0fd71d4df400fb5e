"""JSON-Schema-constrained decoding through two anchor libraries, llguidance and xgrammar, behind the API of
:mod:`bench.reference.grammar_anchors`.

Both adapters take an :class:`~bench.reference.grammar_anchors.AnchorVocab` and a JSON schema (text, dict
or boolean) and expose compile (the constructor), ``fill_bitmask``, ``consume``, ``rollback`` and
``is_accepting`` with the EOS handling of the regex adapters (EOS stays in the adapter: ``consume(EOS)``
succeeds iff the text so far is a complete instance, the mask is then ``{EOS}``). Both are configured to
the semantics of decodekit's ``Grammar.json_schema(..., whitespace="compact", strict=True)``: no whitespace
anywhere, separators exactly ``,`` and ``:`` (the text of ``json.dumps(x, separators=(",", ":"),
ensure_ascii=False)``), object properties in the schema's ``properties`` order, optional ones omissible,
and JSON Schema's own defaults otherwise (an object without ``additionalProperties`` is open, a
``prefixItems`` tuple without ``items`` takes any further items). decodekit's ``strict=True`` is about
keywords, not objects: a keyword it does not enforce is refused. llguidance does the same by default
(its ``lenient`` option is off: "Unimplemented keys" is an error); xgrammar has no such switch.

How each library is driven
--------------------------
* **llguidance** (:class:`LlguidanceJson`): the schema goes into the lark grammar
  ``%llguidance {"no_forcing": true}`` / ``start: %json <schema>``, with the JSON-compiler options
  :data:`LLGUIDANCE_COMPACT_OPTIONS` (``whitespace_flexible: false``, ``item_separator: ","``,
  ``key_separator: ":"``) set as the schema's top-level ``"x-guidance"`` (the boolean schema ``true``
  becomes ``{}`` to carry them). Why lark rather than ``LLMatcher.grammar_from_json_schema(schema,
  defaults=...)``: that helper returns a serialized ``TopLevelGrammar``, and a ``"no_forcing"`` key added
  to its grammar is silently ignored (measured: with it, the mask after ``{"status":"`` of a ``const``
  property is still the single forced token), while the lark ``%llguidance`` directive honours it. Why
  ``no_forcing``: see :mod:`bench.reference.grammar_anchors`; with forcing, masks collapse to the one
  canonical token wherever the schema admits a single continuation (every key of a closed object, every
  ``const``), which is a tokenization policy and not the language. The ``LLTokenizer`` is the regex
  adapters' (:func:`~bench.reference.grammar_anchors.llguidance_tokenizer`), built once per vocabulary.
* **xgrammar** (:class:`XgrammarJson`): a ``TokenizerInfo`` is built once per vocabulary from the raw
  token bytes (``VocabType.RAW``, ``vocab_size`` = the vocabulary size, ``stop_token_ids = [eos]``) in
  which every special id, EOS included, is given the empty byte string: xgrammar has no other way to be
  told which ids are special (it classifies ids with empty text as special), and given the special
  tokens' own text (``<|eot_id|>``) it allows them inside JSON strings, as ordinary text. One
  ``GrammarCompiler`` per vocabulary (``cache_enabled=False``, so every compile is a fresh one; thread
  count :data:`XGRAMMAR_COMPILE_THREADS`, xgrammar's default). Compile is
  ``compile_json_schema(schema_text, any_whitespace=False, separators=(",", ":"), strict_mode=False)``:
  xgrammar's ``strict_mode`` (its default, True) would close every object and tuple that does not say
  otherwise (``unevaluatedProperties`` / ``unevaluatedItems`` false), which is not JSON Schema's meaning
  and not decodekit's. The state lives in a ``GrammarMatcher``; masks are written by
  ``GrammarMatcher.fill_next_token_bitmask`` into the caller's numpy row (DLPack).

Known differences (the benchmark counts mask disagreements as a diagnostic)
---------------------------------------------------------------------------
* **Open vs closed objects.** All three follow JSON Schema here (``additionalProperties`` defaults to
  true), but an open object admits any further key with any JSON value, which is a large language; the
  corpus (:mod:`bench.reference.json_schemas`) says ``additionalProperties: false`` / ``items: false``
  wherever it means closed. Neither llguidance nor decodekit implements ``unevaluatedProperties``.
* **allOf.** llguidance intersects the branches (keys in branch order). xgrammar 0.2.9 warns "Support for
  allOf with multiple options is still ongoing" and accepts any key order and extra keys there.
* **Boolean subschemas.** xgrammar refuses a property whose schema is ``false`` ("Schema 'false' cannot
  accept any value"); llguidance accepts it (the key can never appear). The corpus has none.
* **Strings.** llguidance's default string lexeme excludes ``\\x7f`` and only allows ``\\u00XX`` escapes of
  control characters (``json_allow_general_unicode_escapes`` is off); xgrammar allows any ``\\uXXXX``.
  String ``format`` s use each library's own regex (email, date-time differ in corner cases).

Both libraries are optional: they are imported when an adapter is first built.
"""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .grammar_anchors import AdapterKeepsEos, AnchorVocab, Int32Array, LlguidanceGrammar

if TYPE_CHECKING:
    import llguidance
    import xgrammar

__all__ = [
    "LLGUIDANCE_COMPACT_OPTIONS",
    "XGRAMMAR_COMPILE_THREADS",
    "LlguidanceJson",
    "XgrammarJson",
    "json_anchor_versions",
    "llguidance_json_grammar",
    "mask_allows",
    "schema_text",
    "xgrammar_compile",
    "xgrammar_compiler",
    "xgrammar_tokenizer_info",
]

LLGUIDANCE_COMPACT_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ",",
    "key_separator": ":",
}
"""llguidance ``JsonCompileOptions`` for decodekit's ``whitespace="compact"``."""

XGRAMMAR_COMPILE_THREADS = 8
"""``GrammarCompiler(max_threads=...)``: xgrammar's own default (this machine has fewer cores)."""

JsonSchema = str | dict[str, Any] | bool


def schema_text(schema: JsonSchema) -> str:
    """The schema as JSON text (a ``str`` is taken to be JSON text already and returned as is)."""
    return schema if isinstance(schema, str) else json.dumps(schema)


def llguidance_json_grammar(schema: JsonSchema) -> str:
    """The lark grammar :class:`LlguidanceJson` compiles: ``start: %json <schema>`` with
    :data:`LLGUIDANCE_COMPACT_OPTIONS` as ``"x-guidance"`` and forcing switched off."""
    value = json.loads(schema) if isinstance(schema, str) else schema
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"a JSON schema is an object or a boolean with instances, got {value!r}")
    options = {**value.get("x-guidance", {}), **LLGUIDANCE_COMPACT_OPTIONS}
    return (
        '%llguidance {"no_forcing": true}\nstart: %json '
        + json.dumps({**value, "x-guidance": options})
        + "\n"
    )


class LlguidanceJson(LlguidanceGrammar):
    """A JSON schema, compact whitespace, driven by llguidance's ``LLMatcher`` (see the module docstring)."""

    def __init__(
        self, vocab: AnchorVocab, schema: JsonSchema, *, limits: llguidance.LLParserLimits | None = None
    ) -> None:
        """Compile ``schema`` (the ``LLTokenizer`` for ``vocab`` is built first if not cached yet)."""
        self.schema = schema
        super().__init__(
            vocab, llguidance_json_grammar(schema), limits=limits, what=schema_text(schema)[:200]
        )


# ----------------------------------------------------------------------------------------------- xgrammar

_XGR_TOKENIZER_INFO: weakref.WeakKeyDictionary[AnchorVocab, Any] = weakref.WeakKeyDictionary()
_XGR_COMPILER: weakref.WeakKeyDictionary[AnchorVocab, Any] = weakref.WeakKeyDictionary()


def xgrammar_tokenizer_info(vocab: AnchorVocab) -> xgrammar.TokenizerInfo:
    """Build (once per ``vocab``) xgrammar's ``TokenizerInfo`` over the raw token bytes, specials emptied."""
    info = _XGR_TOKENIZER_INFO.get(vocab)
    if info is None:
        import xgrammar

        encoded = [b"" if i in vocab.special_ids else t for i, t in enumerate(vocab.token_bytes)]
        info = xgrammar.TokenizerInfo(
            encoded, xgrammar.VocabType.RAW, vocab_size=vocab.vocab_size, stop_token_ids=[vocab.eos_id]
        )
        if info.vocab_size != vocab.vocab_size or list(info.stop_token_ids) != [vocab.eos_id]:
            raise RuntimeError(
                f"xgrammar TokenizerInfo: size {info.vocab_size}, stop ids {info.stop_token_ids}"
            )
        missing = vocab.special_ids - set(info.special_token_ids) - {vocab.eos_id}
        if missing:
            raise RuntimeError(f"xgrammar does not treat {len(missing)} special ids as special")
        _XGR_TOKENIZER_INFO[vocab] = info
    return info


def xgrammar_compiler(vocab: AnchorVocab) -> xgrammar.GrammarCompiler:
    """Build (once per ``vocab``) the uncached ``GrammarCompiler`` every :class:`XgrammarJson` uses."""
    compiler = _XGR_COMPILER.get(vocab)
    if compiler is None:
        import xgrammar

        compiler = xgrammar.GrammarCompiler(
            xgrammar_tokenizer_info(vocab), max_threads=XGRAMMAR_COMPILE_THREADS, cache_enabled=False
        )
        _XGR_COMPILER[vocab] = compiler
    return compiler


def xgrammar_compile(vocab: AnchorVocab, schema: JsonSchema) -> xgrammar.CompiledGrammar:
    """``compile_json_schema`` with compact whitespace, ``,``/``:`` separators, JSON Schema's defaults."""
    compiler = xgrammar_compiler(vocab)
    return compiler.compile_json_schema(
        schema_text(schema), any_whitespace=False, separators=(",", ":"), strict_mode=False
    )


class XgrammarJson(AdapterKeepsEos):
    """A JSON schema, compact whitespace, driven by xgrammar's ``GrammarMatcher`` (see the module docs)."""

    def __init__(
        self,
        vocab: AnchorVocab,
        schema: JsonSchema,
        *,
        compiled: xgrammar.CompiledGrammar | None = None,
    ) -> None:
        """Compile ``schema`` (or reuse ``compiled``, a grammar compiled from it for ``vocab``)."""
        import xgrammar

        self.vocab = vocab
        self.schema = schema
        if compiled is None:
            try:
                compiled = xgrammar_compile(vocab, schema)
            except RuntimeError as e:  # xgrammar reports schema errors as RuntimeError
                raise ValueError(f"xgrammar rejected {schema_text(schema)[:200]!r}: {e}") from e
        self.compiled = compiled
        self._matcher = xgrammar.GrammarMatcher(compiled)

    def _complete(self) -> bool:
        return bool(self._matcher.is_completed())

    def _fill(self, out: Int32Array) -> None:
        self._matcher.fill_next_token_bitmask(out.reshape(1, -1))

    def _advance(self, token: int) -> bool:
        return bool(self._matcher.accept_token(token))

    def _rewind(self, steps: int) -> None:
        self._matcher.rollback(steps)


def json_anchor_versions() -> dict[str, str]:
    """Installed versions of llguidance and xgrammar (``"missing"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("llguidance", "xgrammar"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def mask_allows(row: np.ndarray, token: int) -> bool:
    """Whether bit ``token`` of the packed int32 row is set."""
    return bool((int(row[token >> 5]) >> (token & 31)) & 1)
