"""The JSON-Schema-Test-Suite (draft 2020-12) run through decodekit's JSON-schema grammar, as a ratchet.

For every case of every top-level file of `tests/draft2020-12/`, and for each whitespace mode, either the
schema is refused with `UnsupportedSchemaError`, or each test instance is serialized as JSON text,
tokenized with a greedy longest-match over the vocabulary's token bytes and fed to a `Matcher` token by
token: a valid instance must be accepted (every token, then EOS), an invalid one rejected.

The unit of every count is one test instance in one whitespace mode. Its outcome is one of

- ``pass``: valid and accepted, or invalid and rejected;
- ``refused``: the case's schema raised `UnsupportedSchemaError`;
- ``false_accept``: invalid, but some serialization was accepted;
- ``false_reject``: valid, but no serialization was accepted;
- ``error``: the schema raised any other library error while compiling (`GrammarError`,
  `ResourceLimitError`, ...), or the matcher raised while matching.

The grammar emits object properties in a fixed order, so an object instance counts as accepted when some
order of its keys is (see `key_orders`). `run_suite` takes the compiler as an argument, so the runner's
logic is tested with a fake grammar in `test_json_schema_suite.py`.

Run as a script (``.venv/bin/python tests/json_schema_suite.py --help``) to print the counts against the
expectations, rewrite the expectations (``--update``) or write the markdown report (``--report PATH``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import decodekit as dk
import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE_SUBDIRECTORY = Path("json-schema-test-suite", "tests", "draft2020-12")
SHARED_DATA_ENV = "DECODEKIT_SHARED_DATA"
EXPECTATIONS_PATH = REPO_ROOT / "tests" / "json_schema_suite_expectations.json"

Mode = Literal["compact", "flexible"]
MODES: tuple[Mode, ...] = ("compact", "flexible")
# {file: {mode: {outcome: count}}}, the shape of the expectations file.
Counts = dict[str, dict[str, dict[str, int]]]
OUTCOMES = ("pass", "refused", "false_accept", "false_reject", "error")
# A count going in this direction is a regression.
WORSE_WHEN_HIGHER = {
    "pass": False,
    "refused": True,
    "false_accept": True,
    "false_reject": True,
    "error": True,
}

# The serializations of one instance, per mode. A valid instance must be accepted in every style of its
# mode; "flexible" allows JSON whitespace between tokens, so both of json.dumps' spaced layouts must pass.
STYLES: dict[Mode, tuple[str, ...]] = {"compact": ("compact",), "flexible": ("spaced", "indented")}

# Key orders: every permutation of an object with at most this many keys, else original and sorted order.
MAX_PERMUTED_KEYS = 5
# Bound on the key-order combinations of one instance (the product over its nested objects).
MAX_KEY_ORDERS = 120
# The mask check (fill_next_token_bitmask agrees with accept_token at every step) is a pass over the
# vocabulary per step, so it runs on the first serialization of the first few instances of each file only.
MASK_CHECKED_TESTS_PER_FILE = 3

# Schema keywords of draft 2020-12, to name the keyword a refusal message is about.
_KEYWORD_LIST = """
    $schema $id $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment $defs allOf anyOf oneOf not if
    then else dependentSchemas prefixItems items contains properties patternProperties additionalProperties
    propertyNames unevaluatedItems unevaluatedProperties type enum const multipleOf maximum exclusiveMaximum
    minimum exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems maxContains minContains
    maxProperties minProperties required dependentRequired format contentEncoding contentMediaType
    contentSchema title description default deprecated readOnly writeOnly examples
"""
KEYWORDS = tuple(_KEYWORD_LIST.split())
# Keywords that are also everyday words in an error message: only counted when quoted.
_ENGLISH_KEYWORDS = {"not", "if", "then", "else"}


# ---------------------------------------------------------------------------------------------------------
# The suite data


@dataclass(frozen=True)
class SuiteTest:
    """One instance of a case: `data` is the decoded JSON value, `valid` what the suite expects."""

    index: int
    description: str
    data: Any
    valid: bool


@dataclass(frozen=True)
class SuiteCase:
    """One schema of a suite file and its instances."""

    index: int
    description: str
    schema: Any
    tests: tuple[SuiteTest, ...]


@dataclass(frozen=True)
class SuiteFile:
    """A top-level file of the draft's folder, e.g. ``type.json``."""

    name: str
    cases: tuple[SuiteCase, ...]

    @property
    def num_tests(self) -> int:
        return sum(len(case.tests) for case in self.cases)


def suite_directory() -> Path:
    """Where the draft 2020-12 tests are: under `$DECODEKIT_SHARED_DATA` when set, else `../shared/data`."""
    shared = os.environ.get(SHARED_DATA_ENV)
    base = Path(shared) if shared else REPO_ROOT.parent / "shared" / "data"
    return base / SUITE_SUBDIRECTORY


def missing_suite_reason(directory: Path) -> str | None:
    """Why the suite cannot run (None when it can): names the folder it looked in."""
    if directory.is_dir() and any(directory.glob("*.json")):
        return None
    return (
        f"JSON-Schema-Test-Suite not found: looked for {directory}/*.json "
        f"(set {SHARED_DATA_ENV} to the folder holding json-schema-test-suite/)"
    )


def load_suite(directory: Path, names: Iterable[str] | None = None) -> list[SuiteFile]:
    """The top-level ``*.json`` files of `directory` (not ``optional/``), sorted by name; `names` selects."""
    wanted = None if names is None else set(names)
    files = []
    for path in sorted(directory.glob("*.json")):
        if wanted is not None and path.name not in wanted:
            continue
        raw = json.loads(path.read_text(encoding="utf-8"))
        cases = tuple(
            SuiteCase(
                index=i,
                description=case["description"],
                schema=case["schema"],
                tests=tuple(
                    SuiteTest(j, test["description"], test["data"], bool(test["valid"]))
                    for j, test in enumerate(case["tests"])
                ),
            )
            for i, case in enumerate(raw)
        )
        files.append(SuiteFile(path.name, cases))
    if wanted is not None and (unknown := wanted - {f.name for f in files}):
        raise ValueError(f"no such suite files in {directory}: {sorted(unknown)}")
    return files


# ---------------------------------------------------------------------------------------------------------
# Serialization


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every object inside `value`, in document (pre-)order."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _dedup(orders: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(orders))


def _original_and_sorted(keys: tuple[str, ...]) -> list[tuple[str, ...]]:
    return _dedup([keys, tuple(sorted(keys))])


def _reorder(value: Any, orders: Iterator[tuple[str, ...]]) -> Any:
    """A copy of `value` whose objects take their key orders from `orders`, in document order."""
    if isinstance(value, dict):
        order = next(orders)
        # Children in original key order, the order `_objects` numbers them in, whatever order they end in.
        children = {key: _reorder(item, orders) for key, item in value.items()}
        return {key: children[key] for key in order}
    if isinstance(value, list):
        return [_reorder(item, orders) for item in value]
    return value


def key_orders(value: Any, limit: int = MAX_KEY_ORDERS) -> list[Any]:
    """Copies of `value` with its objects' keys in the orders worth trying, the original order first.

    An object with at most `MAX_PERMUTED_KEYS` keys gets every permutation; a larger one its original and
    its sorted order. While the product over all objects exceeds `limit`, the object with the most orders
    (among those with more than these two) falls back to original and sorted order; if that is still too
    many, the whole value gets two variants: every object in original order, and every object sorted.
    Deterministic, and never more than `limit` (>= 1).
    """
    objects = [tuple(obj) for obj in _objects(value)]
    options = [
        _dedup(itertools.permutations(keys)) if len(keys) <= MAX_PERMUTED_KEYS else _original_and_sorted(keys)
        for keys in objects
    ]
    fallbacks = [_original_and_sorted(keys) for keys in objects]
    while math.prod(len(o) for o in options) > limit:
        reducible = [i for i, o in enumerate(options) if len(o) > len(fallbacks[i])]
        if not reducible:
            break
        widest = max(reducible, key=lambda i: len(options[i]))
        options[widest] = fallbacks[widest]
    if math.prod(len(o) for o in options) <= limit:
        return [_reorder(value, iter(choice)) for choice in itertools.product(*options)]
    variants = [value]
    if any(keys != tuple(sorted(keys)) for keys in objects):
        variants.append(_reorder(value, iter([tuple(sorted(keys)) for keys in objects])))
    return variants[: max(1, limit)]


_SURROGATE = re.compile("[\ud800-\udfff]")


def serialize(value: Any, style: str) -> str:
    """The JSON text of `value` in one style: ``compact`` (separators ``,`` and ``:``), ``spaced``
    (json.dumps' default ``, `` and ``: ``) or ``indented`` (indent=2); non-ASCII characters are written as
    themselves, as the grammar's canonical strings are.

    Raises ValueError for values that are not JSON (NaN, infinities, non-JSON types). A lone surrogate
    cannot be written as UTF-8, so it is written as its ``\\uXXXX`` escape.
    """
    options: dict[str, Any] = {"ensure_ascii": False, "allow_nan": False}
    if style == "compact":
        options["separators"] = (",", ":")
    elif style == "indented":
        options["indent"] = 2
    elif style != "spaced":
        raise ValueError(f"unknown serialization style {style!r}")
    try:
        text = json.dumps(value, **options)
    except TypeError as error:
        raise ValueError(f"not JSON data: {error}") from error
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def serializations(value: Any, style: str, limit: int = MAX_KEY_ORDERS) -> list[str]:
    """The distinct texts of `value` in `style` over its `key_orders`, the original order first."""
    return list(dict.fromkeys(serialize(variant, style) for variant in key_orders(value, limit)))


def shorten(text: str, width: int = 80) -> str:
    """`text` cut to `width` characters with an ellipsis, on one line."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------------------
# Tokenizing and walking


class MatcherLike(Protocol):
    """What the runner needs of a `decodekit.Matcher`."""

    def accept_token(self, token: int) -> bool: ...
    def is_accepting(self) -> bool: ...
    def fill_next_token_bitmask(self, bitmask: npt.NDArray[np.int32], row: int = 0) -> None: ...


# A compiled schema: makes a fresh matcher per walk.
MatcherFactory = Callable[[], MatcherLike]
# Compiles a schema in a whitespace mode; raises `UnsupportedSchemaError` to refuse it.
SchemaCompiler = Callable[[Any, Mode], MatcherFactory]


class GreedyTokenizer:
    """Longest-match tokenization over the token bytes of the normal (non-special) tokens.

    Not the tokenizer's BPE: any tokenization of a text in the language must be accepted, and the greedy
    one crosses grammar boundaries (``":"``, ``"},"``, ``"\\n  "``) the way real tokens do.
    """

    def __init__(
        self, token_bytes: Sequence[bytes | None], special_ids: Iterable[int], eos_id: int, size: int
    ):
        special = set(special_ids)
        self.index: dict[bytes, int] = {}
        for i, token in enumerate(token_bytes):
            if token and i not in special:
                self.index.setdefault(token, i)
        self.longest = max(len(t) for t in self.index)
        self.token_bytes = list(token_bytes)
        self.eos_id = eos_id
        self.size = size
        self._cache: dict[bytes, list[int]] = {}

    @classmethod
    def from_vocabulary(cls, vocab: dk.Vocabulary) -> GreedyTokenizer:
        tokens = [vocab.token_bytes(i) for i in range(vocab.num_tokens)]
        return cls(tokens, vocab.special_ids, vocab.eos_ids[0], vocab.size)

    def tokenize(self, data: bytes) -> list[int]:
        """The greedy tokens of `data`; ValueError when some byte has no token."""
        if (cached := self._cache.get(data)) is not None:
            return cached
        out, pos = [], 0
        while pos < len(data):
            for length in range(min(self.longest, len(data) - pos), 0, -1):
                token = self.index.get(data[pos : pos + length])
                if token is not None:
                    out.append(token)
                    pos += length
                    break
            else:
                raise ValueError(f"no token for the bytes {data[pos : pos + 8]!r}")
        self._cache[data] = out
        return out


@dataclass(frozen=True)
class MaskMismatch:
    """A step where `fill_next_token_bitmask` and `accept_token` disagree about the token fed."""

    file: str
    case: str
    test: str
    mode: Mode
    text: str
    step: int
    token: int
    in_mask: bool
    accepted: bool

    def describe(self) -> str:
        what = "EOS" if self.step < 0 else f"step {self.step} (token {self.token})"
        return (
            f"{self.file} / {self.case} / {self.test} [{self.mode}] {shorten(self.text, 60)!r}: "
            f"at {what} the mask says {'allowed' if self.in_mask else 'forbidden'} but the matcher "
            f"{'accepted' if self.accepted else 'refused'} it"
        )


@dataclass(frozen=True)
class Walk:
    """The result of feeding one text: accepted, or where it was refused; `mismatches` from the mask check
    as (step, token, in_mask, accepted), step -1 standing for EOS."""

    accepted: bool
    detail: str = ""
    mismatches: tuple[tuple[int, int, bool, bool], ...] = ()


def _bit(bitmask: npt.NDArray[np.int32], token: int) -> bool:
    return bool((int(bitmask[0, token >> 5]) >> (token & 31)) & 1)


def walk(new_matcher: MatcherFactory, tokenizer: GreedyTokenizer, text: str, check_mask: bool) -> Walk:
    """Feed `text` token by token, then EOS. With `check_mask`, also check at every step that the filled
    mask allows exactly what `accept_token` accepts (and EOS exactly when the matcher is accepting)."""
    data = text.encode("utf-8")
    tokens = tokenizer.tokenize(data)
    matcher = new_matcher()
    bitmask = dk.allocate_token_bitmask(1, tokenizer.size) if check_mask else None
    mismatches: list[tuple[int, int, bool, bool]] = []
    consumed = 0
    for step, token in enumerate(tokens):
        in_mask = None
        if bitmask is not None:
            matcher.fill_next_token_bitmask(bitmask)
            in_mask = _bit(bitmask, token)
        accepted = matcher.accept_token(token)
        if in_mask is not None and in_mask != accepted:
            mismatches.append((step, token, in_mask, accepted))
        piece = tokenizer.token_bytes[token] or b""
        if not accepted:
            detail = f"token {step} {piece!r} refused after {shorten(repr(data[:consumed][-40:]), 50)}"
            return Walk(False, detail, tuple(mismatches))
        consumed += len(piece)
    accepting = matcher.is_accepting()
    if bitmask is not None:
        matcher.fill_next_token_bitmask(bitmask)
        eos_in_mask = _bit(bitmask, tokenizer.eos_id)
        if eos_in_mask != accepting:
            mismatches.append((-1, tokenizer.eos_id, eos_in_mask, accepting))
    if not accepting:
        return Walk(False, "every token accepted, but the complete text is not accepting", tuple(mismatches))
    if not matcher.accept_token(tokenizer.eos_id):
        return Walk(False, "EOS refused although the matcher is accepting", tuple(mismatches))
    return Walk(True, "", tuple(mismatches))


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class TestOutcome:
    """The outcome of one test instance in one whitespace mode; `reason` says why when it is not a pass."""

    __test__ = False  # not a pytest test class, whatever its name

    file: str
    case_index: int
    case: str
    test_index: int
    test: str
    valid: bool
    mode: Mode
    outcome: str
    reason: str
    instance: str


@dataclass
class SuiteResults:
    """Every outcome and mask mismatch of a run, with the suite's files for the counts."""

    files: list[SuiteFile]
    outcomes: list[TestOutcome] = field(default_factory=list)
    mask_mismatches: list[MaskMismatch] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> Counts:
        """``{file: {mode: {outcome: n}}}``, every file, mode and outcome present."""
        counts: Counts = {f.name: {mode: dict.fromkeys(OUTCOMES, 0) for mode in MODES} for f in self.files}
        for o in self.outcomes:
            counts[o.file][o.mode][o.outcome] += 1
        return counts


def _library_error_types() -> tuple[type[BaseException], ...]:
    # GrammarError and ResourceLimitError are DecodekitErrors (panics too); ValueError/OverflowError cover
    # argument conversion; RecursionError a runaway recursion on deeply nested schemas. Anything else is a
    # bug of the runner and propagates.
    return (dk.DecodekitError, ValueError, OverflowError, RecursionError)


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_test(
    suite_file: str,
    case: SuiteCase,
    test: SuiteTest,
    mode: Mode,
    new_matcher: MatcherFactory,
    tokenizer: GreedyTokenizer,
    check_mask: bool,
    key_order_limit: int = MAX_KEY_ORDERS,
) -> tuple[TestOutcome, list[MaskMismatch]]:
    """One instance against a compiled schema: valid passes when, in every style of `mode`, some key order
    is accepted; invalid passes when every key order in every style is rejected."""

    def outcome(kind: str, reason: str = "") -> TestOutcome:
        return _outcome(suite_file, case, test, mode, kind, reason)

    mismatches: list[MaskMismatch] = []
    try:
        for style in STYLES[mode]:
            texts = serializations(test.data, style, key_order_limit)
            first_refusal = ""
            accepted_text = None
            for number, text in enumerate(texts):
                result = walk(new_matcher, tokenizer, text, check_mask and number == 0)
                mismatches.extend(
                    MaskMismatch(suite_file, case.description, test.description, mode, text, *m)
                    for m in result.mismatches
                )
                if result.accepted:
                    accepted_text = text
                    break
                first_refusal = first_refusal or result.detail
            if test.valid and accepted_text is None:
                orders = f"all {len(texts)} key orders" if len(texts) > 1 else "it"
                return outcome("false_reject", f"{style}: rejected {orders}; {first_refusal}"), mismatches
            if not test.valid and accepted_text is not None:
                return outcome("false_accept", f"{style}: accepted {shorten(accepted_text)!r}"), mismatches
    except _library_error_types() as error:
        return outcome("error", f"while matching: {_describe_error(error)}"), mismatches
    return outcome("pass"), mismatches


def run_suite(
    files: Sequence[SuiteFile],
    compile_schema: SchemaCompiler,
    tokenizer: GreedyTokenizer,
    mask_checked_tests_per_file: int = MASK_CHECKED_TESTS_PER_FILE,
    key_order_limit: int = MAX_KEY_ORDERS,
) -> SuiteResults:
    """Every test of every case of `files` in both whitespace modes."""
    start = time.perf_counter()
    results = SuiteResults(list(files))
    for suite_file in files:
        for mode in MODES:
            mask_checks_left = mask_checked_tests_per_file
            for case in suite_file.cases:
                refusal: tuple[str, str] | None
                try:
                    new_matcher = compile_schema(case.schema, mode)
                except dk.UnsupportedSchemaError as error:
                    refusal = ("refused", str(error))
                except _library_error_types() as error:
                    refusal = ("error", _describe_error(error))
                else:
                    refusal = None
                for test in case.tests:
                    if refusal is not None:
                        results.outcomes.append(_outcome(suite_file.name, case, test, mode, *refusal))
                        continue
                    result, mismatches = run_test(
                        suite_file.name, case, test, mode, new_matcher, tokenizer, mask_checks_left > 0,
                        key_order_limit,
                    )  # fmt: skip
                    mask_checks_left -= 1
                    results.outcomes.append(result)
                    results.mask_mismatches.extend(mismatches)
    results.seconds = time.perf_counter() - start
    return results


def _outcome(file: str, case: SuiteCase, test: SuiteTest, mode: Mode, kind: str, reason: str) -> TestOutcome:
    try:
        instance = shorten(serialize(test.data, "compact"))
    except ValueError:
        instance = shorten(repr(test.data))
    return TestOutcome(
        file, case.index, case.description, test.index, test.description, test.valid, mode, kind, reason,
        instance,
    )  # fmt: skip


def decodekit_compiler(vocab: dk.Vocabulary, strict: bool = True) -> SchemaCompiler:
    """The real thing: `Grammar.json_schema` compiled for `vocab`, one `Matcher` per walk.

    The schema goes in as JSON text with ASCII escapes, which keeps every string intact (lone surrogates
    too) and every number's value (Python may spell it differently, as ``100.0`` for ``1e2``). With the
    default ``strict=True`` a keyword that is not enforced refuses the schema, which is what the ratchet
    counts; ``strict=False`` would ignore it and show up as false accepts. Masks are computed on first use
    (``precompute=False``): almost every walk only calls `accept_token`, and precomputing the masks of ~800
    grammars would dominate.
    """

    def compile_schema(schema: Any, mode: Mode) -> MatcherFactory:
        json_schema = dk.Grammar.json_schema  # type: ignore[attr-defined,unused-ignore]
        grammar = json_schema(json.dumps(schema, ensure_ascii=True), whitespace=mode, strict=strict)
        compiled = grammar.compile(vocab, precompute=False)
        return lambda: dk.Matcher(compiled)

    return compile_schema


# ---------------------------------------------------------------------------------------------------------
# Expectations (the ratchet)


def read_expectations(path: Path | None = None) -> Counts:
    """The checked-in counts (`EXPECTATIONS_PATH` unless `path`)."""
    return json.loads((path or EXPECTATIONS_PATH).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def format_expectations(counts: Counts) -> str:
    """The expectations file's text: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(counts, indent=2, sort_keys=True) + "\n"


def write_expectations(counts: Counts, path: Path | None = None) -> None:
    """Rewrite the checked-in counts (`EXPECTATIONS_PATH` unless `path`)."""
    (path or EXPECTATIONS_PATH).write_text(format_expectations(counts), encoding="utf-8")


def compare_counts(expected: Counts, actual: Counts) -> tuple[list[str], list[str]]:
    """(regressions, improvements), one line each: `pass` going down or any other count going up is a
    regression. A file or mode missing from either side is a regression (the suite data or the file
    changed, and the expectations must be regenerated on purpose)."""
    worse: list[str] = []
    better: list[str] = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            worse.append(f"{name}: in the expectations but not in the suite data")
            continue
        if name not in expected:
            worse.append(f"{name}: not in the expectations (regenerate them)")
            continue
        for mode in MODES:
            old, new = expected[name].get(mode), actual[name].get(mode)
            if old is None or new is None:
                side = "expectations" if old is None else "run"
                worse.append(f"{name} [{mode}]: mode missing from the {side}")
                continue
            for kind in OUTCOMES:
                was, now = old.get(kind, 0), new.get(kind, 0)
                if was == now:
                    continue
                line = f"{name} [{mode}] {kind}: {was} -> {now}"
                if (now > was) == WORSE_WHEN_HIGHER[kind]:
                    worse.append(line)
                else:
                    better.append(line)
    return worse, better


# ---------------------------------------------------------------------------------------------------------
# The markdown report


def refusal_keyword(reason: str) -> str:
    """The schema keyword a refusal or error message is about: the first quoted keyword, else the first
    keyword named as a word (not counting "not", "if", "then", "else"), else ``(none named)``."""
    quoted = re.finditer(r"""[`'"](\$?[A-Za-z]+)[`'"]""", reason)
    for match in quoted:
        if match.group(1) in KEYWORDS:
            return match.group(1)
    best: tuple[int, str] | None = None
    for keyword in KEYWORDS:
        if keyword in _ENGLISH_KEYWORDS:
            continue
        found = re.search(rf"(?<![\w$]){re.escape(keyword)}(?!\w)", reason)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), keyword)
    return best[1] if best else "(none named)"


def _code(text: str) -> str:
    """`text` as a markdown code span, whatever backticks it holds."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_WHY_PLACEHOLDER = "_to be written_"
_ANCHOR = re.compile(r"<!-- failure: (.+?) -->\n(.*?)(?=\n<!-- failure: |\n## |\Z)", re.S)
_WHY = re.compile(r"^- \*\*Why:\*\* (.*)", re.S | re.M)


def previous_whys(report: str) -> dict[str, str]:
    """The "Why" text of each failure of an earlier report, by its key, to carry over on regeneration."""
    whys = {}
    for match in _ANCHOR.finditer(report):
        why = _WHY.search(match.group(2))
        if why and why.group(1).strip() != _WHY_PLACEHOLDER:
            whys[match.group(1)] = why.group(1).rstrip()
    return whys


def render_report(results: SuiteResults, whys: dict[str, str] | None = None) -> str:
    """The conformance report: counts per file, every false accept / false reject with a "Why" to fill in
    (kept from `whys`), refusals grouped by keyword, errors and mask mismatches."""
    whys = whys or {}
    counts = results.counts()
    lines = [
        "# JSON-Schema-Test-Suite conformance",
        "",
        "Generated by",
        "`.venv/bin/python tests/json_schema_suite.py --report docs/json_schema_conformance.md`;",
        "the ratchet is `tests/test_json_schema_suite.py` with the counts in",
        "`tests/json_schema_suite_expectations.json`. Only the **Why** lines are written by hand, and a",
        "regenerated report keeps them.",
        "",
        "Each test instance of `json-schema-test-suite/tests/draft2020-12/*.json` (not `optional/`) is run",
        "in both whitespace modes. It is serialized with `json.dumps(..., ensure_ascii=False)` (compact:",
        "separators `,` `:`; flexible: both the default separators and `indent=2`), tokenized greedily on",
        "the GPT-2 vocabulary and fed to a `Matcher`, then EOS. The grammar writes properties in schema",
        "order, so an object counts as accepted when some order of its keys is (every order of an",
        f"object with up to {MAX_PERMUTED_KEYS} keys, original and sorted order of a larger one, at most",
        f"{MAX_KEY_ORDERS} combinations per instance).",
        "",
        "## Counts",
        "",
        "Per file and mode: pass / refused / false accept / false reject / error, counted in test instances.",
        "",
        "| file | tests | compact | flexible |",
        "|---|---:|---|---|",
    ]
    totals = {mode: dict.fromkeys(OUTCOMES, 0) for mode in MODES}
    for suite_file in results.files:
        row = [f"`{suite_file.name}`", str(suite_file.num_tests)]
        for mode in MODES:
            row.append(" / ".join(str(counts[suite_file.name][mode][k]) for k in OUTCOMES))
            for k in OUTCOMES:
                totals[mode][k] += counts[suite_file.name][mode][k]
        lines.append("| " + " | ".join(row) + " |")
    total_tests = sum(f.num_tests for f in results.files)
    lines.append(
        f"| **total** | {total_tests} | "
        + " | ".join(" / ".join(str(totals[m][k]) for k in OUTCOMES) for m in MODES)
        + " |"
    )

    failures: dict[tuple[str, int, int], list[TestOutcome]] = defaultdict(list)
    for o in results.outcomes:
        if o.outcome in ("false_accept", "false_reject"):
            failures[(o.file, o.case_index, o.test_index)].append(o)
    lines += ["", "## False accepts and false rejects", ""]
    if not failures:
        lines.append("None.")
    for (file, case_index, test_index), group in failures.items():
        first = group[0]
        key = f"{file}#{case_index}.{test_index}"
        modes = ", ".join(f"{o.mode}: {o.outcome.replace('_', ' ')}" for o in group)
        lines += [
            f"<!-- failure: {key} -->",
            f"### `{file}`: {first.case} / {first.test}",
            "",
            f"- **Instance** ({'valid' if first.valid else 'invalid'}): {_code(first.instance)}",
            f"- **Outcome**: {modes}",
        ]
        lines += [f"- **Detail** ({o.mode}): {_code(shorten(o.reason, 160))}" for o in group]
        lines += [f"- **Why:** {whys.get(key, _WHY_PLACEHOLDER)}", ""]

    lines += ["## Refused schemas, by keyword", ""]
    lines += _grouped_cases(results, "refused", refusal_keyword, "No schema is refused.")
    lines += ["## Errors", ""]
    lines += _grouped_cases(
        results, "error", lambda reason: reason.split(":", 1)[0], "No compile or matching errors."
    )
    lines += ["## Mask disagreements", ""]
    if results.mask_mismatches:
        lines += [f"- {m.describe()}" for m in results.mask_mismatches]
    else:
        lines.append(
            f"None: on the first {MASK_CHECKED_TESTS_PER_FILE} instances of each file the mask allowed "
            "exactly the tokens `accept_token` accepted, and EOS exactly when accepting."
        )
    return "\n".join(lines).rstrip() + "\n"


def _grouped_cases(results: SuiteResults, kind: str, group_of: Callable[[str], str], none: str) -> list[str]:
    # group -> reason -> case label -> modes
    groups: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    tests_per_group: dict[str, int] = defaultdict(int)
    for o in results.outcomes:
        if o.outcome != kind:
            continue
        group = group_of(o.reason)
        tests_per_group[group] += 1
        modes = groups[group][o.reason].setdefault(f"`{o.file}`: {o.case}", [])
        if o.mode not in modes:
            modes.append(o.mode)
    if not groups:
        return [none, ""]
    lines: list[str] = []
    for group in sorted(groups, key=lambda g: (-tests_per_group[g], g)):
        cases = {label for reasons in groups[group].values() for label in reasons}
        lines += [f"### {_code(group)}: {len(cases)} cases, {tests_per_group[group]} test runs", ""]
        for reason, labelled in sorted(groups[group].items()):
            lines.append(f"- {_code(shorten(reason, 200))}")
            for label, modes in labelled.items():
                suffix = "" if len(modes) == len(MODES) else f" ({', '.join(modes)} only)"
                lines.append(f"  - {label}{suffix}")
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------------------
# Command line


@cache
def gpt2_tokenizer() -> tuple[dk.Vocabulary, GreedyTokenizer]:
    """The GPT-2 vocabulary of `tests/vocabularies.py` and its greedy tokenizer."""
    import vocabularies  # tests/ is on sys.path both under pytest and when run as a script

    vocab = vocabularies.load("gpt2").vocab
    return vocab, GreedyTokenizer.from_vocabulary(vocab)


def run_real_suite(names: Iterable[str] | None = None) -> SuiteResults:
    """The suite (all files, or `names`) through `Grammar.json_schema` on the GPT-2 vocabulary."""
    directory = suite_directory()
    if (reason := missing_suite_reason(directory)) is not None:
        raise FileNotFoundError(reason)
    if not hasattr(dk.Grammar, "json_schema"):
        raise RuntimeError("decodekit.Grammar.json_schema is not available in this build of decodekit")
    vocab, tokenizer = gpt2_tokenizer()
    return run_suite(load_suite(directory, names), decodekit_compiler(vocab), tokenizer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--update", action="store_true", help=f"rewrite {EXPECTATIONS_PATH.name}")
    parser.add_argument("--report", type=Path, metavar="PATH", help="write the markdown conformance report")
    parser.add_argument("--files", nargs="+", metavar="NAME", help="only these suite files (e.g. type.json)")
    args = parser.parse_args(argv)
    if args.update and args.files:
        parser.error("--update needs the whole suite; drop --files")

    results = run_real_suite(args.files)
    counts = results.counts()
    totals = {mode: {k: sum(c[mode][k] for c in counts.values()) for k in OUTCOMES} for mode in MODES}
    for mode in MODES:
        print(f"{mode:9s}", "  ".join(f"{k}={v}" for k, v in totals[mode].items()))
    print(f"{len(results.mask_mismatches)} mask mismatches; {results.seconds:.1f} s")

    if args.report:
        whys = previous_whys(args.report.read_text(encoding="utf-8")) if args.report.exists() else {}
        args.report.write_text(render_report(results, whys), encoding="utf-8")
        print(f"wrote {args.report}")
    if args.update:
        write_expectations(counts)
        print(f"wrote {EXPECTATIONS_PATH}")
        return 0
    if not EXPECTATIONS_PATH.exists():
        print(f"{EXPECTATIONS_PATH} is missing: run with --update to create it")
        return 1
    expected = read_expectations()
    if args.files:
        expected = {name: expected[name] for name in counts if name in expected}
    worse, better = compare_counts(expected, counts)
    for line in worse:
        print("worse:", line)
    for line in better:
        print("better:", line)
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
