"""The JSON-Schema-Test-Suite ratchet: per-file counts of `tests/json_schema_suite.py` never get worse than
`tests/json_schema_suite_expectations.json`, and masks agree with `accept_token` along the way.

``DECODEKIT_UPDATE_EXPECTATIONS=1`` rewrites the expectations instead of comparing. The rest of the file
proves the runner can fail: a fake grammar (a small validator behind a byte-level matcher) and a matcher
that accepts a fixed set of texts drive the key-order, whitespace, counting, mask and comparison logic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import decodekit as dk
import json_schema_suite as suite
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

UPDATE_ENV = "DECODEKIT_UPDATE_EXPECTATIONS"


def suite_directory_or_skip() -> Path:
    directory = suite.suite_directory()
    if (reason := suite.missing_suite_reason(directory)) is not None:
        pytest.skip(reason)
    return directory


@cache
def real_results() -> suite.SuiteResults:
    """The whole suite through `Grammar.json_schema` on GPT-2, once per session (both tests share it)."""
    directory = suite_directory_or_skip()
    if not hasattr(dk.Grammar, "json_schema"):
        pytest.fail("decodekit.Grammar.json_schema is missing from the built extension (issue 8)")
    vocab, tokenizer = suite.gpt2_tokenizer()
    return suite.run_suite(suite.load_suite(directory), suite.decodekit_compiler(vocab), tokenizer)


def regression_message(worse: Sequence[str], better: Sequence[str], path: Path) -> str:
    """The ratchet's failure message: every count that got worse, then the improvements, then what to do."""
    lines = [f"JSON-Schema-Test-Suite counts got worse than {path.name}:", *(f"  {w}" for w in worse)]
    if better:
        lines += ["Improved meanwhile:", *(f"  {b}" for b in better)]
    lines.append(
        f"Fix the regression, or if it is intended, rerun with {UPDATE_ENV}=1 and regenerate the report "
        "(.venv/bin/python tests/json_schema_suite.py --report docs/json_schema_conformance.md)."
    )
    return "\n".join(lines)


def test_suite_counts_do_not_get_worse() -> None:
    suite_directory_or_skip()
    path = suite.EXPECTATIONS_PATH
    updating = os.environ.get(UPDATE_ENV) == "1"
    if not updating and not path.exists():
        pytest.fail(f"{path} is missing: run with {UPDATE_ENV}=1 to create it")
    counts = real_results().counts()
    if updating:
        suite.write_expectations(counts, path)
        print(f"rewrote {path}")
        return
    worse, better = suite.compare_counts(suite.read_expectations(path), counts)
    if worse:
        pytest.fail(regression_message(worse, better, path))
    # Improvements alone pass; the captured output tells whoever looks (-rP) that the file can be tightened.
    for line in better:
        print(f"improved (tighten with {UPDATE_ENV}=1): {line}")


def test_suite_masks_agree_with_accept_token() -> None:
    mismatches = real_results().mask_mismatches
    assert not mismatches, "\n".join(m.describe() for m in mismatches[:20])


# ---------------------------------------------------------------------------------------------------------
# A fake grammar: a byte-level vocabulary and a matcher that buffers the text and validates it at the end.

FAKE_TOKENS: list[bytes | None] = [
    *(bytes([b]) for b in range(256)),
    *(b'{"', b'":', b'": ', b'", "', b"},", b"\n  ", b"true"),
    None,  # EOS
]
FAKE_EOS = len(FAKE_TOKENS) - 1
FAKE_TOKENIZER = suite.GreedyTokenizer(FAKE_TOKENS, [FAKE_EOS], FAKE_EOS, len(FAKE_TOKENS))
WHITESPACE = frozenset(b" \t\n\r")
_SUPPORTED_LIST = """
    type properties required additionalProperties items minimum maximum exclusiveMinimum exclusiveMaximum
    minLength maxLength minItems maxItems enum const $schema description title $comment default
"""
SUPPORTED = frozenset(_SUPPORTED_LIST.split())
TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def has_type(value: Any, name: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "number": number,
        "integer": number and float(value).is_integer(),
        "string": isinstance(value, str),
    }[name]


def check_schema(schema: Any, ignored: frozenset[str]) -> None:
    """Refuse what the fake does not enforce, like `Grammar.json_schema` does."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise dk.GrammarError(f"a schema must be an object or a boolean, not {schema!r}")
    for keyword, value in schema.items():
        if keyword not in SUPPORTED and keyword not in ignored:
            raise dk.UnsupportedSchemaError(f"the keyword '{keyword}' is not enforced")
        if keyword == "type" and any(t not in TYPES for t in ([value] if isinstance(value, str) else value)):
            raise dk.GrammarError(f"unknown type {value!r}")
    for sub in schema.get("properties", {}).values():
        check_schema(sub, ignored)
    for keyword in ("items", "additionalProperties"):
        if keyword in schema:
            check_schema(schema[keyword], ignored)


def validate(schema: Any, value: Any, ignored: frozenset[str]) -> bool:
    """A small JSON Schema validator, which also insists that listed properties come first, in schema
    order (the order a grammar generates them in)."""
    if isinstance(schema, bool):
        return schema

    def active(keyword: str) -> bool:
        return keyword in schema and keyword not in ignored

    if active("type"):
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(has_type(value, name) for name in names):
            return False
    if active("enum") and not any(json_equal(value, option) for option in schema["enum"]):
        return False
    if active("const") and not json_equal(value, schema["const"]):
        return False
    if has_type(value, "number"):
        bounds: dict[str, Callable[[Any, Any], bool]] = {
            "minimum": lambda v, b: v >= b,
            "maximum": lambda v, b: v <= b,
            "exclusiveMinimum": lambda v, b: v > b,
            "exclusiveMaximum": lambda v, b: v < b,
        }
        if any(active(k) and not holds(value, schema[k]) for k, holds in bounds.items()):
            return False
    if isinstance(value, str):
        if active("minLength") and len(value) < schema["minLength"]:
            return False
        if active("maxLength") and len(value) > schema["maxLength"]:
            return False
    if isinstance(value, list):
        if active("minItems") and len(value) < schema["minItems"]:
            return False
        if active("maxItems") and len(value) > schema["maxItems"]:
            return False
        if active("items") and not all(validate(schema["items"], item, ignored) for item in value):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {}) if active("properties") else {}
        listed = [key for key in value if key in properties]
        if listed != [key for key in properties if key in value] or list(value)[: len(listed)] != listed:
            return False
        if active("required") and any(key not in value for key in schema["required"]):
            return False
        for key, item in value.items():
            if key in properties:
                sub = properties[key]
            elif active("additionalProperties"):
                sub = schema["additionalProperties"]
            else:
                continue
            if not validate(sub, item, ignored):
                return False
    return True


def write_bits(allowed: npt.NDArray[np.bool_], bitmask: npt.NDArray[np.int32], row: int) -> None:
    """Row `row` of `bitmask` := `allowed` as little-endian bits in int32 words."""
    padded = np.zeros(bitmask.shape[1] * 32, dtype=bool)
    padded[: len(allowed)] = allowed
    bitmask[row] = np.packbits(padded, bitorder="little").view("<i4")


class FakeMatcher:
    """Buffers the text; in compact mode it refuses a token that puts whitespace outside a string, so the
    refusal comes mid-walk; the text is accepting when it parses and validates."""

    def __init__(self, schema: Any, mode: suite.Mode, ignored: frozenset[str], broken_mask: bool):
        self.schema, self.mode, self.ignored, self.broken_mask = schema, mode, ignored, broken_mask
        self.text = b""
        self.state = "outside"  # or "string", "escape"
        self.terminated = False

    def _scan(self, data: bytes) -> str | None:
        """The scanner state after `data`, or None when compact mode forbids it."""
        state = self.state
        for byte in data:
            if state == "escape":
                state = "string"
            elif state == "string":
                state = {ord("\\"): "escape", ord('"'): "outside"}.get(byte, "string")
            elif byte == ord('"'):
                state = "string"
            elif self.mode == "compact" and byte in WHITESPACE:
                return None
        return state

    def accept_token(self, token: int) -> bool:
        if self.terminated:
            return False
        if token == FAKE_EOS:
            self.terminated = self.is_accepting()
            return self.terminated
        data = FAKE_TOKENS[token]
        if not data or (state := self._scan(data)) is None:
            return False
        self.text += data
        self.state = state
        return True

    def is_accepting(self) -> bool:
        try:
            value = json.loads(self.text.decode("utf-8"))
        except ValueError:
            return False
        return validate(self.schema, value, self.ignored)

    def fill_next_token_bitmask(self, bitmask: npt.NDArray[np.int32], row: int = 0) -> None:
        allowed = np.zeros(len(FAKE_TOKENS), dtype=bool)
        if not self.terminated and not self.broken_mask:
            allowed[:FAKE_EOS] = [t is not None and self._scan(t) is not None for t in FAKE_TOKENS[:FAKE_EOS]]
        allowed[FAKE_EOS] = not self.terminated and self.is_accepting()
        write_bits(allowed, bitmask, row)


def fake_compiler(ignored: frozenset[str] = frozenset(), broken_mask: bool = False) -> suite.SchemaCompiler:
    """Compiles by checking the schema; `ignored` keywords are accepted but not enforced (a buggy grammar)."""

    def compile_schema(schema: Any, mode: suite.Mode) -> suite.MatcherFactory:
        check_schema(schema, ignored)
        return lambda: FakeMatcher(schema, mode, ignored, broken_mask)

    return compile_schema


def make_file(name: str, *cases: tuple[Any, list[tuple[Any, bool]]]) -> suite.SuiteFile:
    return suite.SuiteFile(
        name,
        tuple(
            suite.SuiteCase(
                i,
                f"case {i}",
                schema,
                tuple(suite.SuiteTest(j, f"test {j}", data, valid) for j, (data, valid) in enumerate(tests)),
            )
            for i, (schema, tests) in enumerate(cases)
        ),
    )


ORDERED = {"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "required": ["a", "b"]}
SYNTHETIC = make_file(
    "synthetic.json",
    (ORDERED, [({"a": "x", "b": 1}, True), ({"a": 1, "b": 1}, False), ({"b": 1}, False)]),
    ({"type": "integer", "minimum": 3}, [(3, True), (2, False), (3.0, True), ("3", False)]),
    ({"uniqueItems": True}, [([1, 1], False), ([1, 2], True)]),
    ({"type": "wat"}, [(1, True)]),
    ({"type": "array", "items": ORDERED}, [([{"a": "x", "b": 1}, {"a": "y", "b": 2}], True), ([{}], False)]),
)


def counts_of(results: suite.SuiteResults, name: str, mode: suite.Mode) -> dict[str, int]:
    return results.counts()[name][mode]


def test_fake_grammar_counts_every_outcome() -> None:
    results = suite.run_suite([SYNTHETIC], fake_compiler(), FAKE_TOKENIZER)
    for mode in suite.MODES:
        assert counts_of(results, "synthetic.json", mode) == {
            "pass": 9, "refused": 2, "false_accept": 0, "false_reject": 0, "error": 1,
        }  # fmt: skip
    refused = [o for o in results.outcomes if o.outcome == "refused"]
    assert {o.reason for o in refused} == {"the keyword 'uniqueItems' is not enforced"}
    assert suite.refusal_keyword(refused[0].reason) == "uniqueItems"
    (error,) = {o.reason for o in results.outcomes if o.outcome == "error"}
    assert error.startswith("GrammarError: unknown type")
    assert not results.mask_mismatches


def test_key_orders_are_needed_for_the_schema_order() -> None:
    """With only the original key order, `{"a":..., "b":...}` is falsely rejected by a grammar that writes
    `b` first; the permutations find the order, also inside arrays."""
    results = suite.run_suite([SYNTHETIC], fake_compiler(), FAKE_TOKENIZER, key_order_limit=1)
    rejected = {(o.case_index, o.test_index) for o in results.outcomes if o.outcome == "false_reject"}
    assert rejected == {(0, 0), (4, 0)}
    assert all("not accepting" in o.reason for o in results.outcomes if o.outcome == "false_reject")


def test_ignored_keywords_show_as_false_accepts_and_the_ratchet_fails() -> None:
    good = suite.run_suite([SYNTHETIC], fake_compiler(), FAKE_TOKENIZER).counts()
    buggy_results = suite.run_suite([SYNTHETIC], fake_compiler(frozenset({"minimum"})), FAKE_TOKENIZER)
    buggy = buggy_results.counts()
    for mode in suite.MODES:
        assert buggy["synthetic.json"][mode]["false_accept"] == 1
        assert buggy["synthetic.json"][mode]["pass"] == 8
    (accepted,) = {
        o.reason for o in buggy_results.outcomes if o.outcome == "false_accept" and o.mode == "compact"
    }
    assert accepted == "compact: accepted '2'"
    worse, better = suite.compare_counts(good, buggy)
    assert worse == [
        "synthetic.json [compact] pass: 9 -> 8",
        "synthetic.json [compact] false_accept: 0 -> 1",
        "synthetic.json [flexible] pass: 9 -> 8",
        "synthetic.json [flexible] false_accept: 0 -> 1",
    ]
    assert better == []
    assert suite.compare_counts(buggy, good) == (
        [],
        [line.replace("9 -> 8", "8 -> 9").replace("0 -> 1", "1 -> 0") for line in worse],
    )


def test_a_mask_that_disagrees_with_accept_token_is_reported() -> None:
    results = suite.run_suite([SYNTHETIC], fake_compiler(broken_mask=True), FAKE_TOKENIZER)
    assert results.mask_mismatches
    assert all(m.in_mask is False and m.accepted is True for m in results.mask_mismatches)
    # Only the first serialization of the first MASK_CHECKED_TESTS_PER_FILE compiled tests per mode.
    assert {(m.case, m.test) for m in results.mask_mismatches} == {("case 0", f"test {i}") for i in range(3)}
    assert "the mask says forbidden but the matcher accepted it" in results.mask_mismatches[0].describe()
    assert results.counts() == suite.run_suite([SYNTHETIC], fake_compiler(), FAKE_TOKENIZER).counts()


class TextSetMatcher:
    """Accepts exactly the texts in `accepted` (any tokenization); its mask allows every token."""

    def __init__(self, accepted: set[str]):
        self.accepted = {t.encode() for t in accepted}
        self.text = b""

    def accept_token(self, token: int) -> bool:
        if token == FAKE_EOS:
            return self.is_accepting()
        self.text += FAKE_TOKENS[token] or b""
        return True

    def is_accepting(self) -> bool:
        return self.text in self.accepted

    def fill_next_token_bitmask(self, bitmask: npt.NDArray[np.int32], row: int = 0) -> None:
        allowed = np.ones(len(FAKE_TOKENS), dtype=bool)
        allowed[FAKE_EOS] = self.is_accepting()
        write_bits(allowed, bitmask, row)


def run_one(valid: bool, data: Any, mode: suite.Mode, accepted: set[str]) -> suite.TestOutcome:
    case = suite.SuiteCase(0, "case", {}, (suite.SuiteTest(0, "test", data, valid),))
    outcome, mismatches = suite.run_test(
        "f.json", case, case.tests[0], mode, lambda: TextSetMatcher(accepted), FAKE_TOKENIZER, True
    )
    assert not mismatches
    return outcome


def test_valid_needs_some_order_in_every_style_and_invalid_needs_every_order_rejected() -> None:
    data = {"a": 1, "b": [True, None]}
    # An invalid instance is falsely accepted when any key order is accepted, not only the original one.
    assert run_one(False, data, "compact", {'{"b":[true,null],"a":1}'}).outcome == "false_accept"
    assert run_one(False, data, "compact", {'{"a": 1, "b": [true, null]}'}).outcome == "pass"
    assert run_one(True, data, "compact", {'{"b":[true,null],"a":1}'}).outcome == "pass"
    # Flexible mode: the spaced and the indented layout must both be accepted, in some key order each.
    spaced = '{"b": [true, null], "a": 1}'
    indented = json.dumps({"a": 1, "b": [True, None]}, indent=2)
    assert run_one(True, data, "flexible", {spaced, indented}).outcome == "pass"
    only_spaced = run_one(True, data, "flexible", {spaced})
    assert only_spaced.outcome == "false_reject"
    assert only_spaced.reason.startswith("indented: rejected all 2 key orders; every token accepted")
    assert run_one(False, data, "flexible", {indented}).reason.startswith("indented: accepted")
    assert run_one(True, data, "flexible", {'{"a":1,"b":[true,null]}'}).outcome == "false_reject"


def test_walk_needs_every_token_the_end_and_eos() -> None:
    class RefusesEos(TextSetMatcher):
        def accept_token(self, token: int) -> bool:
            return token != FAKE_EOS and super().accept_token(token)

    assert suite.walk(lambda: TextSetMatcher({"[1]"}), FAKE_TOKENIZER, "[1]", True) == suite.Walk(True)
    refused = suite.walk(lambda: RefusesEos({"[1]"}), FAKE_TOKENIZER, "[1]", False)
    assert refused == suite.Walk(False, "EOS refused although the matcher is accepting")
    unfinished = suite.walk(lambda: TextSetMatcher({"[1]"}), FAKE_TOKENIZER, "[1", False)
    assert unfinished == suite.Walk(False, "every token accepted, but the complete text is not accepting")
    compact = suite.walk(
        lambda: FakeMatcher(True, "compact", frozenset(), False), FAKE_TOKENIZER, "[1, 2]", True
    )
    assert compact == suite.Walk(False, "token 3 b' ' refused after b'[1,'")


def test_serializations() -> None:
    assert suite.serializations({"b": 1, "a": "é"}, "compact") == ['{"b":1,"a":"é"}', '{"a":"é","b":1}']
    assert suite.serializations([1.0, "\ud800"], "spaced") == ['[1.0, "\\ud800"]']
    assert suite.serializations({"k": []}, "indented") == ['{\n  "k": []\n}']
    for bad in (float("nan"), float("inf"), {1, 2}):
        with pytest.raises(ValueError, match="JSON"):
            suite.serialize(bad, "compact")


def test_key_order_bounds() -> None:
    five = dict.fromkeys("abcde", 0)
    assert len(suite.key_orders(five)) == 120
    assert len(suite.key_orders(dict.fromkeys("fedcba", 0))) == 2  # original and sorted
    assert len(suite.key_orders(dict.fromkeys("abcdef", 0))) == 1  # already sorted
    assert len(suite.key_orders({"x": five, "y": five})) == 2  # 2 * 120 * 120 is cut down to 2 * 1 * 1
    assert len(suite.key_orders([{"b": 0, "a": 0}] * 10)) == 2  # 2**10: every object original, or sorted
    # Already sorted objects give up their second permutation first, so the unsorted one keeps both.
    mixed = suite.key_orders([{"b": 0, "a": 0}] + [{"a": 0, "b": 0}] * 8)
    assert len(mixed) == 64
    assert {tuple(v[0]) for v in mixed} == {("b", "a"), ("a", "b")}
    assert suite.key_orders({"b": {"d": 1, "c": 2}, "a": 0}, limit=1) == [{"b": {"d": 1, "c": 2}, "a": 0}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=2), children, max_size=6)
    ),
    max_leaves=20,
)


@given(json_values)
def test_key_orders_are_bounded_distinct_reorderings(value: Any) -> None:
    variants = suite.key_orders(value)
    assert 1 <= len(variants) <= suite.MAX_KEY_ORDERS
    assert json.dumps(variants[0]) == json.dumps(value)  # the original order comes first
    texts = [json.dumps(v) for v in variants]
    assert len(set(texts)) == len(texts)
    assert all(v == value for v in variants)  # dict equality ignores order: the same JSON value


def test_compare_counts_names_each_count_that_gets_worse() -> None:
    base = {"pass": 5, "refused": 2, "false_accept": 1, "false_reject": 1, "error": 1}
    expected = {"a.json": {"compact": dict(base), "flexible": dict(base)}}
    for kind, delta in [("pass", -1), ("refused", 1), ("false_accept", 1), ("false_reject", 1), ("error", 1)]:
        actual = json.loads(json.dumps(expected))
        actual["a.json"]["flexible"][kind] += delta
        was = base[kind]
        assert suite.compare_counts(expected, actual) == (
            [f"a.json [flexible] {kind}: {was} -> {was + delta}"],
            [],
        )
        assert suite.compare_counts(actual, expected) == (
            [],
            [f"a.json [flexible] {kind}: {was + delta} -> {was}"],
        )
    assert suite.compare_counts(expected, {})[0] == ["a.json: in the expectations but not in the suite data"]
    assert suite.compare_counts({}, expected)[0] == ["a.json: not in the expectations (regenerate them)"]
    partial = {"a.json": {"compact": dict(base)}}
    assert suite.compare_counts(partial, expected)[0] == [
        "a.json [flexible]: mode missing from the expectations"
    ]


def test_regression_message_lists_improvements_only_next_to_regressions(tmp_path: Path) -> None:
    message = regression_message(
        ["x.json [compact] pass: 2 -> 1"], ["y.json [compact] refused: 3 -> 0"], tmp_path
    )
    assert "x.json [compact] pass: 2 -> 1" in message
    assert "Improved meanwhile:\n  y.json [compact] refused: 3 -> 0" in message
    assert f"{UPDATE_ENV}=1" in message


def test_expectations_file_format(tmp_path: Path) -> None:
    counts = suite.run_suite([SYNTHETIC], fake_compiler(), FAKE_TOKENIZER).counts()
    path = tmp_path / "expectations.json"
    suite.write_expectations(counts, path)
    text = path.read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert suite.read_expectations(path) == counts
    assert set(counts["synthetic.json"]["compact"]) == set(suite.OUTCOMES)


def test_report_lists_failures_and_keeps_the_why_text() -> None:
    results = suite.run_suite([SYNTHETIC], fake_compiler(frozenset({"minimum"})), FAKE_TOKENIZER)
    report = suite.render_report(results)
    assert "<!-- failure: synthetic.json#1.1 -->" in report
    assert "- **Instance** (invalid): `2`" in report
    assert "- **Outcome**: compact: false accept, flexible: false accept" in report
    assert "### `uniqueItems`: 1 cases, 4 test runs" in report
    assert "### `GrammarError`: 1 cases, 2 test runs" in report
    explained = report.replace("- **Why:** _to be written_", "- **Why:** minimum is not enforced\nyet.")
    assert suite.previous_whys(explained) == {"synthetic.json#1.1": "minimum is not enforced\nyet."}
    assert "- **Why:** minimum is not enforced\nyet." in suite.render_report(
        results, suite.previous_whys(explained)
    )


def test_missing_suite_data_names_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(suite.SHARED_DATA_ENV, str(tmp_path))
    directory = suite.suite_directory()
    assert directory == tmp_path / "json-schema-test-suite" / "tests" / "draft2020-12"
    reason = suite.missing_suite_reason(directory)
    assert reason is not None
    assert str(directory) in reason
    assert suite.SHARED_DATA_ENV in reason


def test_fake_grammar_on_real_suite_files() -> None:
    """The loader and the runner on real files, with a fake that enforces their keywords correctly: no false
    accept or reject, so every miss the real run reports is the grammar's."""
    names = ["const.json", "enum.json", "maxLength.json", "minimum.json", "required.json", "type.json"]
    files = suite.load_suite(suite_directory_or_skip(), names)
    results = suite.run_suite(files, fake_compiler(), FAKE_TOKENIZER)
    for f in files:
        for mode in suite.MODES:
            counts = counts_of(results, f.name, mode)
            assert sum(counts.values()) == f.num_tests
            assert counts["false_accept"] == counts["false_reject"] == counts["error"] == 0, (f.name, counts)
            assert counts["pass"] > 0
    assert not results.mask_mismatches
