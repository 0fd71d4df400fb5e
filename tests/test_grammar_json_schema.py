"""JSON Schema grammars: random schemas (hypothesis) accept the instances hypothesis-jsonschema generates
and reject the mutations `jsonschema` rejects; text sampled under the mask always validates; formats,
numeric bounds, whitespace modes, strictness, pickling and bad input."""

from __future__ import annotations

import decimal
import json
import pickle
import warnings
from functools import cache
from typing import Any

import decodekit as dk
import numpy as np
import pytest
import vocabularies
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_grammar_regex import greedy_tokenize

jsonschema = pytest.importorskip("jsonschema")
hypothesis_jsonschema = pytest.importorskip("hypothesis_jsonschema")

Json = Any


# --- serializing an instance the way the grammar writes it -------------------------------------------


def ordered(value: Json, schema: Json) -> Json:
    """`value` with object keys in the schema's `properties` order, other keys after them."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        keys = [k for k in properties if k in value] + [k for k in value if k not in properties]
        extra = schema.get("additionalProperties", True)
        return {k: ordered(value[k], properties.get(k, extra)) for k in keys}
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", True)
        return [ordered(v, prefix[i] if i < len(prefix) else items) for i, v in enumerate(value)]
    return value


def dumps(value: Json, *, compact: bool = True) -> str:
    """JSON text as the grammar writes it: floats positional (never an exponent), strings unescaped."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        text = format(decimal.Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    comma, colon = (",", ":") if compact else (", ", ": ")
    if isinstance(value, list):
        return "[" + comma.join(dumps(v, compact=compact) for v in value) + "]"
    members = (
        json.dumps(k, ensure_ascii=False) + colon + dumps(v, compact=compact) for k, v in value.items()
    )
    return "{" + comma.join(members) + "}"


@cache
def gpt2() -> dk.Vocabulary:
    return vocabularies.load("gpt2").vocab


def accepts(compiled: dk.CompiledGrammar, text: str) -> bool:
    matcher = dk.Matcher(compiled)
    tokens = greedy_tokenize("gpt2", text.encode())
    return matcher.accept_tokens(tokens) == len(tokens) and matcher.accept_token(gpt2().eos_ids[0])


def validates(instance: Json, schema: Json) -> bool:
    return bool(jsonschema.Draft202012Validator(schema).is_valid(instance))


# --- random schemas -------------------------------------------------------------------------------------

NAMES = ["id", "name", "tags", "x", "kind", "é"]


def bounds(draw: st.DrawFn, integer: bool) -> dict[str, Json]:
    schema: dict[str, Json] = {"type": "integer" if integer else "number"}
    value = st.integers(-50, 50) if integer else st.decimals(-50, 50, places=2).map(float)
    lo, hi = draw(st.none() | value), draw(st.none() | value)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if lo is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = hi
    return schema


@st.composite
def leaf_schemas(draw: st.DrawFn) -> dict[str, Json]:
    kind = draw(st.sampled_from(["bool", "null", "int", "num", "str", "enum", "pattern"]))
    if kind in ("int", "num"):
        return bounds(draw, kind == "int")
    if kind == "str":
        lo = draw(st.integers(0, 4))
        return {"type": "string", "minLength": lo, "maxLength": lo + draw(st.integers(0, 6))}
    if kind == "enum":
        values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b c", 'q"', "é"]), st.none())
        return {"enum": draw(st.lists(values, min_size=1, max_size=4, unique=True))}
    if kind == "pattern":
        return {
            "type": "string",
            "pattern": draw(st.sampled_from(["^[a-z]{1,4}$", "^x-[0-9]+$", "^(ab|c)*$"])),
        }
    return {"type": "boolean" if kind == "bool" else "null"}


def compound(children: st.SearchStrategy[dict[str, Json]]) -> st.SearchStrategy[dict[str, Json]]:
    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Json]:
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
        properties = {n: draw(children) for n in names}
        schema: dict[str, Json] = {"type": "object", "properties": properties}
        schema["required"] = draw(st.lists(st.sampled_from(names), unique=True))
        extra = draw(st.sampled_from(["absent", "false", "schema"]))
        if extra == "false":
            schema["additionalProperties"] = False
        elif extra == "schema":
            schema["additionalProperties"] = draw(children)
        return schema

    @st.composite
    def arrays(draw: st.DrawFn) -> dict[str, Json]:
        # no prefixItems: hypothesis-jsonschema reads drafts 4 to 7 and would ignore them
        schema: dict[str, Json] = {"type": "array", "items": draw(children)}
        lo = draw(st.integers(0, 2))
        schema["minItems"] = lo
        if draw(st.booleans()):
            schema["maxItems"] = lo + draw(st.integers(0, 3))
        return schema

    return objects() | arrays()


schemas = st.recursive(leaf_schemas(), compound, max_leaves=6)

MUTANTS: list[Json] = [0, -1, 1.5, 100, "x", "", "zzzzzzzzzz", None, True, [], {}, [1], {"k": 1}]


def mutate(value: Json, draw: st.DrawFn) -> Json:
    """One random change somewhere inside `value`: a replaced value, a dropped or an added key."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        what = draw(st.sampled_from(["inner", "drop", "add"]))
        if what == "drop":
            return {k: v for k, v in value.items() if k != key}
        if what == "add":
            return {**value, "zz": draw(st.sampled_from(MUTANTS))}
        return {**value, key: mutate(value[key], draw)}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(value[i], draw), *value[i + 1 :]]
    return draw(st.sampled_from(MUTANTS))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(schema=schemas, data=st.data())
def test_random_schemas_accept_valid_and_reject_invalid_instances(schema: dict[str, Json], data: Any) -> None:
    try:
        compiled = dk.Grammar.json_schema(schema).compile(gpt2())
    except dk.UnsupportedSchemaError as e:  # e.g. minimum 0 with exclusiveMaximum 0
        assume("accepts no value" not in str(e))
        raise
    flexible = dk.Grammar.json_schema(schema, whitespace="flexible").compile(gpt2())
    for _ in range(3):
        instance = data.draw(hypothesis_jsonschema.from_schema(schema), label="instance")
        assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(instance, ensure_ascii=False)))
        instance = ordered(instance, schema)
        assert validates(instance, schema)
        text = dumps(instance)
        assert accepts(compiled, text), f"{json.dumps(schema)} rejected the valid {text}"
        assert accepts(flexible, dumps(instance, compact=False))
        mutant = ordered(mutate(instance, data.draw), schema)
        mutant_text = dumps(mutant)
        if validates(mutant, schema):
            assert accepts(compiled, mutant_text), f"{json.dumps(schema)} rejected the valid {mutant_text}"
        else:
            assert not accepts(compiled, mutant_text), (
                f"{json.dumps(schema)} accepted the invalid {mutant_text}"
            )


SAMPLED_SCHEMAS: dict[str, Json] = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "email": {"type": "string", "format": "email"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "measurement": {
        "type": "object",
        "properties": {
            "value": {"type": "number", "exclusiveMinimum": -1.5, "maximum": 2.25},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["value", "when", "id"],
        "additionalProperties": False,
    },
    "tree": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "pattern": "^[a-z]{1,3}$"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
                },
                "required": ["label"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "union": {
        "anyOf": [
            {"type": "null"},
            {"type": "array", "prefixItems": [{"const": "point"}, {"type": "integer"}], "items": False},
            {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        ]
    },
}


@pytest.mark.parametrize("name", sorted(SAMPLED_SCHEMAS))
def test_sampling_under_the_mask_always_validates(name: str) -> None:
    """100 texts per schema, each token the argmax of random logits under the mask (as the text grows, EOS
    and a few tokens that end strings, arrays, objects, e-mail addresses and times pushed up and digits
    down, so that texts end): every text parses as JSON and validates, with formats checked."""
    schema = SAMPLED_SCHEMAS[name]
    vocab = gpt2()
    compiled = dk.Grammar.json_schema(schema).compile(vocab)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    rng = np.random.default_rng(1)
    mask = dk.allocate_token_bitmask(1, vocab.size)
    eos = vocab.eos_ids[0]
    # pushed towards the end of strings, arrays, objects, e-mail addresses and times
    finishing = np.zeros(vocab.size, dtype=np.float32)
    for text, weight in [(b'"', 1.0), (b"]", 0.8), (b"}", 0.6), (b"@", 0.9), (b".", 0.5), (b"Z", 0.5)]:
        finishing[greedy_tokenize("gpt2", text)[0]] = weight
    finishing[eos] = 1.0
    digits = [i for i in range(vocab.num_tokens) if vocab.token_bytes(i).isdigit()]
    for _ in range(100):
        matcher, tokens = dk.Matcher(compiled), []
        while not matcher.is_terminated():
            assert len(tokens) < 400, vocab.decode(tokens)
            logits = rng.standard_normal(vocab.size).astype(np.float32) * 2
            logits += finishing * (len(tokens) / 8)
            logits[digits] -= len(tokens) / 8
            matcher.fill_next_token_bitmask(mask)
            dk.apply_token_bitmask(logits, mask[0])
            token = int(np.argmax(logits))
            assert matcher.accept_token(token)
            tokens.append(token)
        text = vocab.decode(tokens[:-1]).decode()
        errors = list(validator.iter_errors(json.loads(text)))
        assert not errors, f"{text}: {errors[0].message}"


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date", ["2024-02-29", "1999-12-31"], ["2023-02-29", "2024-13-01", "24-01-01"]),
        ("time", ["23:59:60Z", "08:30:00.5+05:30"], ["24:00:00Z", "08:30:00"]),
        ("date-time", ["2024-01-01T00:00:00Z"], ["2024-01-01 00:00:00Z"]),
        ("email", ["jane.doe+x@mail.example.org"], ["jane@", "@example.org", "a b@c.de"]),
        ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000"]),
        ("uri", ["https://example.com/a?b=c#d", "urn:isbn:0451450523"], ["no scheme", "http://a b"]),
        ("ipv4", ["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "1.2.3", "01.2.3.4"]),
        ("ipv6", ["::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1"], ["1::2::3", "12345::"]),
    ],
)
def test_formats(fmt: str, good: list[str], bad: list[str]) -> None:
    compiled = dk.Grammar.json_schema({"type": "string", "format": fmt}).compile(gpt2())
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for text in good:
        assert accepts(compiled, json.dumps(text)), text
        assert checker.conforms(text, fmt) or fmt in ("uri",), text
    for text in bad:
        assert not accepts(compiled, json.dumps(text)), text


def test_strictness_names_keyword_and_pointer() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}, "b": {"not": {}}}}
    with pytest.raises(dk.UnsupportedSchemaError, match='"multipleOf" at /properties/a/multipleOf'):
        dk.Grammar.json_schema(schema)
    with pytest.warns(
        UserWarning, match=r'"multipleOf" at /properties/a/multipleOf; keyword "not" at /properties/b/not'
    ):
        lenient = dk.Grammar.json_schema(schema, strict=False)
    assert accepts(lenient.compile(gpt2()), '{"a":4,"b":null}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dk.Grammar.json_schema({"type": "integer"}, strict=False)  # nothing ignored: no warning


@pytest.mark.parametrize(
    ("schema", "error", "message"),
    [
        ('{"type": ', dk.GrammarError, "not valid JSON"),
        ({"$ref": "#/$defs/nope"}, dk.GrammarError, "points to nothing"),
        ({"type": "objekt"}, dk.GrammarError, 'unknown type "objekt"'),
        (
            {"properties": {"a": {"$ref": "https://example.com/a.json"}}},
            dk.UnsupportedSchemaError,
            "/properties/a",
        ),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, dk.GrammarError, "never finish"),
        (False, dk.UnsupportedSchemaError, "accepts no value"),
        ({"type": "string", "maxLength": 20000}, dk.UnsupportedSchemaError, "string lengths above"),
        ({"x": {1, 2}}, dk.GrammarError, "not JSON-serializable"),
    ],
)
def test_bad_schemas(schema: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        dk.Grammar.json_schema(schema)


def test_bad_options_and_pickling() -> None:
    with pytest.raises(dk.InvalidInputError, match="whitespace must be"):
        dk.Grammar.json_schema({}, whitespace="pretty")  # type: ignore[arg-type]
    with pytest.raises(dk.InvalidInputError, match="max_compile_seconds"):
        dk.Grammar.json_schema({}, max_compile_seconds=0)
    grammar = dk.Grammar.json_schema(SAMPLED_SCHEMAS["person"], whitespace="flexible")
    again = pickle.loads(pickle.dumps(grammar))
    assert again.num_states == grammar.num_states
    assert accepts(again.compile(gpt2()), '{ "name": "Al", "age": 3 }')


def test_compile_budget() -> None:
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "maxLength": 40} for i in range(3000)},
    }
    with pytest.raises(dk.ResourceLimitError, match="took more than"):
        dk.Grammar.json_schema(wide, max_compile_seconds=0.001)


def test_large_and_deep_schemas_compile_without_exhausting_the_stack() -> None:
    """Wide, long and deep schemas compile in bounded time and stack (each once crashed or hung)."""
    names = [f"p{i}" for i in range(1000)]
    wide = {"type": "object", "properties": {key: {"type": "integer"} for key in names}, "required": names}
    compiled = dk.Grammar.json_schema(wide).compile(gpt2())
    assert accepts(compiled, "{" + ",".join(f'"{n}":{i}' for i, n in enumerate(names)) + "}")
    assert not accepts(compiled, "{" + ",".join(f'"{n}":{i}' for i, n in enumerate(names[:-1])) + "}")
    deep: Json = {"type": "null"}
    for _ in range(120):
        deep = {"type": "array", "items": deep, "maxItems": 2}
    compiled = dk.Grammar.json_schema(deep).compile(gpt2())
    assert accepts(compiled, "[" * 120 + "null" + "]" * 120)
    many = dk.Grammar.json_schema({"type": "array", "items": {"type": "integer"}, "minItems": 3000})
    assert accepts(many.compile(gpt2()), "[" + ",".join(["7"] * 3000) + "]")
    assert not accepts(many.compile(gpt2()), "[" + ",".join(["7"] * 2999) + "]")
    with pytest.raises(dk.UnsupportedSchemaError, match="property name of 200000 characters"):
        dk.Grammar.json_schema({"type": "object", "properties": {"x" * 200_000: {"type": "integer"}}})
