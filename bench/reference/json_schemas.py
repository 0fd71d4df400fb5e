"""The JSON-Schema corpus of the constrained-decoding benchmarks: 23 schemas of increasing difficulty, each
with hand-written valid instances.

From flat objects of scalars, through enums, ``const``, numeric ranges (inclusive and exclusive, on
integers and numbers), string length bounds, ``pattern``, ``format``, arrays with item bounds, tuples
(``prefixItems``), ``anyOf`` / ``oneOf`` / ``allOf``, open and closed objects and the boolean schema
``true``, to recursive ``$ref``\\ s through ``$defs`` (a linked list, a tree, an expression AST) and one long
OpenAPI-like document with many properties and nested components.

The instances are Python values whose dicts list their keys in the schema's ``properties`` order (the
order every engine generates them in); :func:`compact` turns one into the text an engine walks, the text
of ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``: no whitespace, UTF-8, non-ASCII
characters unescaped.

Every object that is meant to be closed says ``"additionalProperties": false`` and every closed tuple says
``"items": false``: an open object (JSON Schema's default) admits any further key with any value, and
engines differ in how they close objects (xgrammar's ``strict_mode``). The exceptions are deliberate and
named in the schemas' descriptions: ``allOf`` (where a closed branch would reject the other branch's
keys) and the explicitly open objects of ``additional_properties``.

:func:`check_corpus` validates every instance against its schema with the ``jsonschema`` package (draft
2020-12, formats checked) and checks the key order; the benchmark harness calls it before measuring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["SCHEMAS", "SchemaCase", "check_corpus", "compact"]

JsonSchema = dict[str, Any] | bool


def compact(value: Any) -> str:
    """The compact JSON text of ``value``: separators ``,`` and ``:``, no whitespace, UTF-8 unescaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SchemaCase:
    """One schema of the corpus with its valid instances (keys in ``properties`` order)."""

    name: str
    description: str
    schema: JsonSchema
    instances: tuple[Any, ...]

    @property
    def schema_text(self) -> str:
        """The schema as JSON text (what every engine is given)."""
        return json.dumps(self.schema, ensure_ascii=False)

    @property
    def instance_texts(self) -> tuple[str, ...]:
        """The compact JSON text of every instance."""
        return tuple(compact(v) for v in self.instances)


def _object(properties: dict[str, Any], required: Iterable[str] | None = None) -> dict[str, Any]:
    """A closed object schema; every property is required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_BOOLEAN = {"type": "boolean"}
_DATE_TIME = {"type": "string", "format": "date-time"}

# --- the schemas, easiest first ---------------------------------------------------------------------------

_CASES: list[SchemaCase] = [
    SchemaCase(
        "flat_object",
        "four required scalars of four types",
        _object({"id": _INTEGER, "name": _STRING, "active": _BOOLEAN, "score": _NUMBER}),
        (
            {"id": 1, "name": "Ada Lovelace", "active": True, "score": 97.5},
            {"id": -42, "name": "", "active": False, "score": 0},
            {"id": 1234567, "name": "Zoë Øster — café ☕", "active": True, "score": -0.000325},
        ),
    ),
    SchemaCase(
        "optional_nullable",
        "optional properties (omitted in some instances), null and a nullable type array",
        _object(
            {
                "title": _STRING,
                "subtitle": {"type": ["string", "null"]},
                "page": _INTEGER,
                "draft": _BOOLEAN,
                "note": {"type": "null"},
            },
            required=["title"],
        ),
        (
            {"title": "Introduction"},
            {"title": "Chapter 2", "subtitle": None, "draft": True},
            {"title": "Appendix", "subtitle": "Tables", "page": 312, "draft": False, "note": None},
        ),
    ),
    SchemaCase(
        "enums_const",
        "string, integer and mixed-type enums and consts",
        _object(
            {
                "kind": {"const": "invoice"},
                "currency": {"enum": ["EUR", "USD", "GBP", "JPY", "CHF"]},
                "priority": {"enum": [1, 2, 3, 5, 8, 13]},
                "flag": {"enum": ["on", "off", None, True]},
                "version": {"const": 2},
                "region": {"enum": ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"]},
            }
        ),
        (
            {
                "kind": "invoice",
                "currency": "EUR",
                "priority": 13,
                "flag": None,
                "version": 2,
                "region": "eu-west-1",
            },
            {
                "kind": "invoice",
                "currency": "JPY",
                "priority": 1,
                "flag": True,
                "version": 2,
                "region": "us-west-2",
            },
            {
                "kind": "invoice",
                "currency": "CHF",
                "priority": 5,
                "flag": "off",
                "version": 2,
                "region": "ap-south-1",
            },
        ),
    ),
    SchemaCase(
        "string_lengths",
        "minLength / maxLength (counted in characters, instances with non-ASCII text)",
        _object(
            {
                "code": {"type": "string", "minLength": 2, "maxLength": 2},
                "username": {"type": "string", "minLength": 3, "maxLength": 16},
                "bio": {"type": "string", "maxLength": 80},
                "headline": {"type": "string", "minLength": 1},
            },
            required=["code", "username", "headline"],
        ),
        (
            {
                "code": "de",
                "username": "jörg_müller",
                "bio": "Baut Orgeln in Köln.",
                "headline": "Orgelbauer",
            },
            {"code": "JP", "username": "山田太郎", "headline": "ソフトウェアエンジニア"},
            {"code": "fr", "username": "abc", "bio": "", "headline": "x"},
        ),
    ),
    SchemaCase(
        "integer_ranges",
        "integer minimum / maximum and exclusive bounds, negative and one-sided ranges",
        _object(
            {
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "floor": {"type": "integer", "minimum": -5, "maximum": 120},
                "percent": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
                "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                "offset": {"type": "integer", "exclusiveMinimum": -1000, "maximum": -10},
                "count": {"type": "integer", "minimum": 1},
                "balance": {"type": "integer", "exclusiveMaximum": 0},
            }
        ),
        (
            {
                "age": 37,
                "floor": -2,
                "percent": 99,
                "year": 2024,
                "offset": -999,
                "count": 123456789,
                "balance": -1,
            },
            {
                "age": 0,
                "floor": 120,
                "percent": 1,
                "year": 1900,
                "offset": -10,
                "count": 1,
                "balance": -420000,
            },
            {
                "age": 150,
                "floor": 0,
                "percent": 50,
                "year": 2100,
                "offset": -500,
                "count": 10,
                "balance": -73,
            },
        ),
    ),
    SchemaCase(
        "number_ranges",
        "number minimum / maximum and exclusive bounds, fractional bounds",
        _object(
            {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
                "probability": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "temperature_k": {"type": "number", "exclusiveMinimum": 0},
                "discount": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5},
                "delta": {"type": "number", "minimum": -1.5, "maximum": 2.25},
            }
        ),
        (
            {
                "lat": 48.8566,
                "lon": 2.3522,
                "probability": 0.95,
                "temperature_k": 273.15,
                "discount": 0.125,
                "delta": -1.5,
            },
            {
                "lat": -90,
                "lon": 179.999,
                "probability": 0.0001,
                "temperature_k": 5778,
                "discount": 0,
                "delta": 2.25,
            },
            {
                "lat": 35.6762,
                "lon": -139.6503,
                "probability": 0.5,
                "temperature_k": 0.001,
                "discount": 0.49,
                "delta": 0,
            },
        ),
    ),
    SchemaCase(
        "patterns",
        "anchored regex patterns: SKU, hex colour, semantic version, phone number, slug",
        _object(
            {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
                "version": {
                    "type": "string",
                    "pattern": "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[a-z0-9.]+)?$",
                },
                "phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$"},
                "slug": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
            }
        ),
        (
            {
                "sku": "ABC-1234",
                "color": "#1a2B3c",
                "version": "1.12.0",
                "phone": "+4915112345678",
                "slug": "hello",
            },
            {
                "sku": "XYZ-0000",
                "color": "#FFFFFF",
                "version": "0.0.1-rc.1",
                "phone": "+12025550123",
                "slug": "constrained-decoding-in-rust-2024",
            },
        ),
    ),
    SchemaCase(
        "formats",
        "string formats date, date-time, email, uuid, ipv4",
        _object(
            {
                "date": {"type": "string", "format": "date"},
                "timestamp": _DATE_TIME,
                "email": {"type": "string", "format": "email"},
                "id": {"type": "string", "format": "uuid"},
                "ip": {"type": "string", "format": "ipv4"},
            }
        ),
        (
            {
                "date": "2024-02-29",
                "timestamp": "2024-02-29T13:45:00Z",
                "email": "jane.doe@example.com",
                "id": "123e4567-e89b-12d3-a456-426614174000",
                "ip": "192.168.0.1",
            },
            {
                "date": "1999-12-31",
                "timestamp": "2026-11-28T09:33:28.123+05:30",
                "email": "first.last+tag@sub.example.co.uk",
                "id": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
                "ip": "10.0.255.7",
            },
        ),
    ),
    SchemaCase(
        "arrays_bounded",
        "arrays of scalars with minItems / maxItems and bounded items",
        _object(
            {
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 12},
                    "minItems": 1,
                    "maxItems": 5,
                },
                "scores": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0, "maximum": 10},
                    "minItems": 3,
                    "maxItems": 3,
                },
                "flags": {"type": "array", "items": _BOOLEAN},
                "ratios": {"type": "array", "items": _NUMBER, "maxItems": 4},
            }
        ),
        (
            {"tags": ["rust", "python", "llm"], "scores": [10, 0, 7], "flags": [], "ratios": [0.5, 1.25]},
            {"tags": ["a"], "scores": [1, 2, 3], "flags": [True, False, True, True], "ratios": []},
            {
                "tags": ["one", "two", "three", "four", "five"],
                "scores": [9, 9, 9],
                "flags": [False],
                "ratios": [1, 2, 3, 4],
            },
        ),
    ),
    SchemaCase(
        "nested_objects",
        "objects three levels deep, some optional",
        _object(
            {
                "user": _object(
                    {
                        "name": _STRING,
                        "contact": _object(
                            {
                                "email": {"type": "string", "format": "email"},
                                "phone": {"type": "string", "pattern": "^\\+[0-9]{8,15}$"},
                            },
                            required=["email"],
                        ),
                        "address": _object(
                            {
                                "street": _STRING,
                                "city": _STRING,
                                "geo": _object(
                                    {
                                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                                    }
                                ),
                            },
                            required=["city"],
                        ),
                    },
                    required=["name", "contact"],
                ),
                "verified": _BOOLEAN,
            }
        ),
        (
            {
                "user": {
                    "name": "Grace Hopper",
                    "contact": {"email": "grace@navy.mil", "phone": "+12025550199"},
                    "address": {
                        "street": "1 Main St",
                        "city": "Arlington",
                        "geo": {"lat": 38.88, "lon": -77.1},
                    },
                },
                "verified": True,
            },
            {"user": {"name": "Kō", "contact": {"email": "ko@example.jp"}}, "verified": False},
        ),
    ),
    SchemaCase(
        "array_of_objects",
        "an order with nested arrays of objects (line items with their own arrays)",
        _object(
            {
                "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "items": _object(
                        {
                            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                            "price": {"type": "number", "minimum": 0},
                            "options": {
                                "type": "array",
                                "items": _object({"name": _STRING, "value": _STRING}),
                            },
                        },
                        required=["sku", "quantity", "price"],
                    ),
                },
                "gift": _BOOLEAN,
            },
            required=["order_id", "items"],
        ),
        (
            {
                "order_id": "ORD-004217",
                "items": [
                    {
                        "sku": "TSH-0001",
                        "quantity": 2,
                        "price": 19.99,
                        "options": [{"name": "size", "value": "L"}],
                    },
                    {"sku": "MUG-0420", "quantity": 1, "price": 8.5},
                    {
                        "sku": "CAP-1000",
                        "quantity": 12,
                        "price": 12,
                        "options": [
                            {"name": "colour", "value": "navy"},
                            {"name": "logo", "value": "embroidered"},
                        ],
                    },
                ],
                "gift": True,
            },
            {
                "order_id": "ORD-999999",
                "items": [{"sku": "ABC-1234", "quantity": 99, "price": 0, "options": []}],
            },
        ),
    ),
    SchemaCase(
        "matrix",
        "arrays of arrays: a 2-D matrix of numbers and a ragged list of integer rows",
        _object(
            {
                "shape": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "values": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "items": _NUMBER, "minItems": 1},
                },
                "ragged": {"type": "array", "items": {"type": "array", "items": _INTEGER}},
            }
        ),
        (
            {
                "shape": [3, 3],
                "values": [[1, 0, 0], [0, 0.7071, -0.7071], [0, 0.7071, 0.7071]],
                "ragged": [[1], [2, 3], [], [4, 5, 6, -7]],
            },
            {"shape": [1, 4], "values": [[-1.5, 2.25, 3.125, 1000000]], "ragged": []},
        ),
    ),
    SchemaCase(
        "tuples",
        "prefixItems: a closed 3-tuple, a tuple with typed rest items, a fixed pair by min/maxItems",
        _object(
            {
                "point": {
                    "type": "array",
                    "prefixItems": [_NUMBER, _NUMBER, _NUMBER],
                    "items": False,
                    "minItems": 3,
                },
                "record": {
                    "type": "array",
                    "prefixItems": [_STRING, _INTEGER, _BOOLEAN],
                    "items": {"type": "string", "maxLength": 8},
                    "minItems": 3,
                },
                "range": {
                    "type": "array",
                    "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 0}],
                    "items": False,
                    "minItems": 2,
                },
            }
        ),
        (
            {"point": [1.5, -2, 0.25], "record": ["alice", 42, True, "admin", "ops"], "range": [0, 100]},
            {"point": [0, 0, 0], "record": ["bob", -1, False], "range": [7, 7]},
        ),
    ),
    SchemaCase(
        "any_of",
        "anyOf over scalar types and over two object shapes sharing a discriminator key",
        _object(
            {
                "value": {
                    "anyOf": [
                        _INTEGER,
                        {"type": "string", "maxLength": 10},
                        {"type": "array", "items": _INTEGER},
                        {"type": "null"},
                    ]
                },
                "shape": {
                    "anyOf": [
                        _object({"kind": {"const": "circle"}, "radius": {"type": "number", "minimum": 0}}),
                        _object({"kind": {"const": "rect"}, "width": _NUMBER, "height": _NUMBER}),
                    ]
                },
            }
        ),
        (
            {"value": 17, "shape": {"kind": "circle", "radius": 2.5}},
            {"value": "seventeen", "shape": {"kind": "rect", "width": 3, "height": 4.5}},
            {"value": [1, 2, 3], "shape": {"kind": "circle", "radius": 0}},
            {"value": None, "shape": {"kind": "rect", "width": 0.5, "height": 0.5}},
        ),
    ),
    SchemaCase(
        "one_of",
        "oneOf of three payment methods told apart by a const discriminator",
        _object(
            {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "payment": {
                    "oneOf": [
                        _object(
                            {
                                "method": {"const": "card"},
                                "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                                "brand": {"enum": ["visa", "mastercard", "amex"]},
                            }
                        ),
                        _object(
                            {
                                "method": {"const": "bank"},
                                "iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"},
                            }
                        ),
                        _object(
                            {"method": {"const": "wallet"}, "provider": _STRING, "account": _STRING},
                            required=["method", "provider"],
                        ),
                    ]
                },
            }
        ),
        (
            {"amount": 42.5, "payment": {"method": "card", "last4": "4242", "brand": "visa"}},
            {"amount": 1000, "payment": {"method": "bank", "iban": "DE89370400440532013000"}},
            {"amount": 0.99, "payment": {"method": "wallet", "provider": "paypal"}},
        ),
    ),
    SchemaCase(
        "all_of",
        "allOf of a $ref'd base object and an extension (branches left open, as allOf needs: see the "
        "module docstring; keys in branch order)",
        {
            "$defs": {
                "timestamps": {
                    "type": "object",
                    "properties": {"created": _DATE_TIME, "updated": _DATE_TIME},
                    "required": ["created"],
                }
            },
            "allOf": [
                _ref("timestamps"),
                {
                    "type": "object",
                    "properties": {"id": {"type": "integer", "minimum": 1}, "title": _STRING},
                    "required": ["id", "title"],
                },
            ],
        },
        (
            {
                "created": "2024-01-01T00:00:00Z",
                "updated": "2024-03-05T12:30:00Z",
                "id": 7,
                "title": "Design doc",
            },
            {"created": "2023-07-14T08:00:00+02:00", "id": 1, "title": "Kick-off"},
        ),
    ),
    SchemaCase(
        "additional_properties",
        "maps (additionalProperties with a schema), an explicitly open object, a closed one, a `true` value",
        _object(
            {
                "labels": {"type": "object", "additionalProperties": _STRING},
                "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                "meta": {
                    "type": "object",
                    "properties": {"source": _STRING},
                    "required": ["source"],
                    "additionalProperties": True,
                },
                "closed": _object({"a": _INTEGER, "b": _INTEGER}, required=[]),
                "payload": True,
            },
            required=["labels", "counts", "meta", "closed"],
        ),
        (
            {
                "labels": {"env": "prod", "team": "decoding"},
                "counts": {"requests": 1024, "errors": 0},
                "meta": {"source": "api", "retries": 3, "tags": ["a", "b"]},
                "closed": {"a": 1},
                "payload": {"anything": [1, "two", None]},
            },
            {"labels": {}, "counts": {}, "meta": {"source": "cli"}, "closed": {}},
        ),
    ),
    SchemaCase(
        "any_json",
        "the boolean schema true: any JSON value",
        True,
        (
            {"a": [1, 2.5, {"b": None, "c": [True, False]}], "d": "text with ünïcödé", "e": {}},
            [1, "two", [3, [4, [5]]], {"six": 6}],
            "just a string",
            -12.5e-3,
        ),
    ),
    SchemaCase(
        "event_log",
        "an array of event objects with formats, enums, optional nested payloads",
        {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": _object(
                {
                    "id": {"type": "string", "format": "uuid"},
                    "at": _DATE_TIME,
                    "level": {"enum": ["debug", "info", "warn", "error"]},
                    "source": {"type": "string", "pattern": "^[a-z]+(\\.[a-z]+)*$"},
                    "message": {"type": "string", "maxLength": 200},
                    "context": _object(
                        {
                            "host": {"type": "string", "format": "ipv4"},
                            "latency_ms": {"type": "number", "minimum": 0},
                            "retry": {"type": "integer", "minimum": 0, "maximum": 5},
                        },
                        required=["host"],
                    ),
                },
                required=["id", "at", "level", "source", "message"],
            ),
        },
        (
            [
                {
                    "id": "0b9f1c1e-3f4a-4e2b-9a53-5c1c1f2e8d71",
                    "at": "2025-05-01T10:00:00.000Z",
                    "level": "info",
                    "source": "gateway.http",
                    "message": "GET /v1/models 200",
                    "context": {"host": "10.1.2.3", "latency_ms": 12.7},
                },
                {
                    "id": "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
                    "at": "2025-05-01T10:00:01.250Z",
                    "level": "error",
                    "source": "scheduler",
                    "message": "KV cache exhausted; preempting request 17",
                    "context": {"host": "10.1.2.4", "latency_ms": 0, "retry": 2},
                },
                {
                    "id": "a1b2c3d4-e5f6-4789-abcd-ef0123456789",
                    "at": "2025-05-01T10:00:02+00:00",
                    "level": "debug",
                    "source": "sampler.grammar.json",
                    "message": "mask cache hit",
                },
            ],
        ),
    ),
    SchemaCase(
        "linked_list",
        "recursive $ref: a singly linked list (next is a node or null)",
        {
            "$defs": {
                "node": _object(
                    {
                        "value": _INTEGER,
                        "label": _STRING,
                        "next": {"anyOf": [_ref("node"), {"type": "null"}]},
                    },
                    required=["value", "next"],
                )
            },
            "$ref": "#/$defs/node",
        },
        (
            {
                "value": 1,
                "label": "head",
                "next": {
                    "value": 2,
                    "next": {
                        "value": 3,
                        "next": {"value": 5, "next": {"value": 8, "label": "tail", "next": None}},
                    },
                },
            },
            {"value": -1, "next": None},
        ),
    ),
    SchemaCase(
        "tree",
        "recursive $ref through an array: a file-system tree of named nodes with children",
        {
            "$defs": {
                "tree": _object(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "kind": {"enum": ["dir", "file"]},
                        "size": {"type": "integer", "minimum": 0},
                        "children": {"type": "array", "items": _ref("tree")},
                    },
                    required=["name", "kind"],
                )
            },
            "$ref": "#/$defs/tree",
        },
        (
            {
                "name": "/",
                "kind": "dir",
                "children": [
                    {
                        "name": "src",
                        "kind": "dir",
                        "children": [
                            {"name": "lib.rs", "kind": "file", "size": 2048},
                            {"name": "grammar", "kind": "dir", "children": []},
                        ],
                    },
                    {"name": "README.md", "kind": "file", "size": 512},
                ],
            },
            {"name": "empty.txt", "kind": "file", "size": 0},
        ),
    ),
    SchemaCase(
        "expression",
        "recursive $ref through anyOf: an expression AST of numbers, variables, binary operations and calls",
        {
            "$defs": {
                "expr": {"anyOf": [_ref("num"), _ref("var"), _ref("binop"), _ref("call")]},
                "num": _object({"type": {"const": "num"}, "value": _NUMBER}),
                "var": _object(
                    {"type": {"const": "var"}, "name": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"}}
                ),
                "binop": _object(
                    {
                        "type": {"const": "binop"},
                        "op": {"enum": ["+", "-", "*", "/", "^"]},
                        "left": _ref("expr"),
                        "right": _ref("expr"),
                    }
                ),
                "call": _object(
                    {
                        "type": {"const": "call"},
                        "fn": {"enum": ["sin", "cos", "sqrt", "max", "min"]},
                        "args": {"type": "array", "items": _ref("expr"), "minItems": 1, "maxItems": 4},
                    }
                ),
            },
            "$ref": "#/$defs/expr",
        },
        (
            {
                "type": "binop",
                "op": "+",
                "left": {
                    "type": "binop",
                    "op": "*",
                    "left": {"type": "num", "value": 2},
                    "right": {"type": "var", "name": "x"},
                },
                "right": {
                    "type": "call",
                    "fn": "max",
                    "args": [
                        {"type": "var", "name": "y_1"},
                        {
                            "type": "call",
                            "fn": "sqrt",
                            "args": [
                                {
                                    "type": "binop",
                                    "op": "-",
                                    "left": {"type": "num", "value": 10.5},
                                    "right": {"type": "num", "value": -3},
                                }
                            ],
                        },
                    ],
                },
            },
            {"type": "num", "value": 3.14159},
        ),
    ),
]


def _openapi_like() -> SchemaCase:
    """A long API response document: many properties and nested components through ``$ref``."""
    money = _object(
        {
            "amount": {"type": "string", "pattern": "^-?(0|[1-9][0-9]*)\\.[0-9]{2}$"},
            "currency": {"enum": ["EUR", "USD", "GBP", "JPY", "CHF", "SEK"]},
        }
    )
    address = _object(
        {
            "line1": {"type": "string", "minLength": 1, "maxLength": 100},
            "line2": {"type": ["string", "null"], "maxLength": 100},
            "city": {"type": "string", "minLength": 1},
            "region": _STRING,
            "postal_code": {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9 -]{1,8}[A-Z0-9]$"},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        },
        required=["line1", "city", "postal_code", "country"],
    )
    customer = _object(
        {
            "id": {"type": "string", "format": "uuid"},
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string", "minLength": 1, "maxLength": 120},
            "phone": {"anyOf": [{"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$"}, {"type": "null"}]},
            "tier": {"enum": ["free", "pro", "enterprise"]},
            "billing_address": _ref("Address"),
            "shipping_address": _ref("Address"),
            "marketing_opt_in": _BOOLEAN,
            "created_at": _DATE_TIME,
        },
        required=["id", "email", "name", "tier", "billing_address", "created_at"],
    )
    line_item = _object(
        {
            "line": {"type": "integer", "minimum": 1},
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}(-[A-Z0-9]{2})?$"},
            "name": _STRING,
            "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
            "unit_price": _ref("Money"),
            "discount_percent": {"type": "number", "minimum": 0, "maximum": 100},
            "tax_code": {"enum": ["standard", "reduced", "zero", "exempt"]},
            "attributes": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 40}},
        },
        required=["line", "sku", "name", "quantity", "unit_price", "tax_code"],
    )
    tracking_event = _object(
        {
            "at": _DATE_TIME,
            "location": _STRING,
            "code": {
                "enum": [
                    "label_created",
                    "picked_up",
                    "in_transit",
                    "out_for_delivery",
                    "delivered",
                    "exception",
                ]
            },
        },
        required=["at", "code"],
    )
    shipment = _object(
        {
            "id": {"type": "string", "pattern": "^SHP-[0-9A-F]{10}$"},
            "carrier": {"enum": ["dhl", "ups", "fedex", "usps", "royal_mail", "postnl"]},
            "service": {"enum": ["standard", "express", "overnight"]},
            "tracking_number": {"type": "string", "pattern": "^[A-Z0-9]{10,22}$"},
            "status": {"enum": ["pending", "shipped", "delivered", "returned"]},
            "address": _ref("Address"),
            "shipped_at": _DATE_TIME,
            "estimated_delivery": {"type": "string", "format": "date"},
            "weight_kg": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
            "events": {"type": "array", "items": _ref("TrackingEvent"), "maxItems": 50},
        },
        required=["id", "carrier", "service", "status", "address"],
    )
    payment = {
        "oneOf": [
            _object(
                {
                    "method": {"const": "card"},
                    "brand": {"enum": ["visa", "mastercard", "amex", "discover"]},
                    "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                    "exp_month": {"type": "integer", "minimum": 1, "maximum": 12},
                    "exp_year": {"type": "integer", "minimum": 2024, "maximum": 2040},
                }
            ),
            _object(
                {
                    "method": {"const": "bank_transfer"},
                    "iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"},
                    "reference": {"type": "string", "maxLength": 35},
                }
            ),
            _object({"method": {"const": "invoice"}, "due_date": {"type": "string", "format": "date"}}),
        ]
    }
    link = _object(
        {
            "href": {"type": "string", "pattern": "^/api/v2(/[a-z0-9_-]+)+$"},
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
        }
    )
    problem = _object(
        {
            "code": {"type": "string", "pattern": "^[A-Z]+(_[A-Z]+)*$"},
            "message": _STRING,
            "field": _STRING,
        },
        required=["code", "message"],
    )
    order = _object(
        {
            "id": {"type": "string", "format": "uuid"},
            "number": {"type": "string", "pattern": "^ORD-[0-9]{8}$"},
            "status": {"enum": ["draft", "placed", "paid", "fulfilled", "cancelled", "refunded"]},
            "channel": {"enum": ["web", "mobile", "pos", "api"]},
            "customer": _ref("Customer"),
            "items": {"type": "array", "items": _ref("LineItem"), "minItems": 1, "maxItems": 100},
            "subtotal": _ref("Money"),
            "shipping": _ref("Money"),
            "tax": _ref("Money"),
            "total": _ref("Money"),
            "payment": _ref("Payment"),
            "shipments": {"type": "array", "items": _ref("Shipment")},
            "coupon": {"anyOf": [{"type": "string", "pattern": "^[A-Z0-9]{4,12}$"}, {"type": "null"}]},
            "notes": {"type": "string", "maxLength": 500},
            "gift": _BOOLEAN,
            "metadata": {"type": "object", "additionalProperties": _STRING},
            "created_at": _DATE_TIME,
            "updated_at": _DATE_TIME,
        },
        required=["id", "number", "status", "customer", "items", "subtotal", "tax", "total", "created_at"],
    )
    schema = {
        "$defs": {
            "Money": money,
            "Address": address,
            "Customer": customer,
            "LineItem": line_item,
            "TrackingEvent": tracking_event,
            "Shipment": shipment,
            "Payment": payment,
            "Link": link,
            "Problem": problem,
            "Order": order,
        },
        **_object(
            {
                "api_version": {"const": "2024-06-01"},
                "request_id": {"type": "string", "format": "uuid"},
                "status": {"enum": ["ok", "partial", "error"]},
                "order": _ref("Order"),
                "links": _object(
                    {"self": _ref("Link"), "customer": _ref("Link"), "invoice": _ref("Link")}, ["self"]
                ),
                "warnings": {"type": "array", "items": _ref("Problem"), "maxItems": 10},
                "rate_limit": _object(
                    {
                        "limit": {"type": "integer", "minimum": 1},
                        "remaining": {"type": "integer", "minimum": 0},
                        "reset_at": _DATE_TIME,
                    }
                ),
            },
            required=["api_version", "request_id", "status", "order", "links"],
        ),
    }
    address_1 = {
        "line1": "Hauptstraße 5",
        "line2": None,
        "city": "Berlin",
        "region": "BE",
        "postal_code": "10115",
        "country": "DE",
    }
    full = {
        "api_version": "2024-06-01",
        "request_id": "9f8e7d6c-5b4a-4321-8fed-cba987654321",
        "status": "ok",
        "order": {
            "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "number": "ORD-20240601",
            "status": "paid",
            "channel": "web",
            "customer": {
                "id": "c56a4180-65aa-42ec-a945-5fd21dec0538",
                "email": "lena.schmidt@example.de",
                "name": "Lena Schmidt",
                "phone": "+4930123456789",
                "tier": "pro",
                "billing_address": address_1,
                "shipping_address": {
                    "line1": "Am Kupfergraben 6",
                    "city": "Berlin",
                    "postal_code": "10117",
                    "country": "DE",
                },
                "marketing_opt_in": False,
                "created_at": "2021-09-14T08:21:00Z",
            },
            "items": [
                {
                    "line": 1,
                    "sku": "KBD-0104-DE",
                    "name": "Mechanical keyboard, German layout",
                    "quantity": 1,
                    "unit_price": {"amount": "129.00", "currency": "EUR"},
                    "discount_percent": 10,
                    "tax_code": "standard",
                    "attributes": {"switch": "brown", "colour": "graphite"},
                },
                {
                    "line": 2,
                    "sku": "CBL-2200",
                    "name": "USB-C cable 2 m",
                    "quantity": 3,
                    "unit_price": {"amount": "9.90", "currency": "EUR"},
                    "tax_code": "standard",
                },
            ],
            "subtotal": {"amount": "145.80", "currency": "EUR"},
            "shipping": {"amount": "4.95", "currency": "EUR"},
            "tax": {"amount": "24.07", "currency": "EUR"},
            "total": {"amount": "150.75", "currency": "EUR"},
            "payment": {
                "method": "card",
                "brand": "visa",
                "last4": "4242",
                "exp_month": 11,
                "exp_year": 2027,
            },
            "shipments": [
                {
                    "id": "SHP-00A1B2C3D4",
                    "carrier": "dhl",
                    "service": "express",
                    "tracking_number": "JD014600006281230001",
                    "status": "shipped",
                    "address": address_1,
                    "shipped_at": "2024-06-02T16:40:00+02:00",
                    "estimated_delivery": "2024-06-04",
                    "weight_kg": 1.35,
                    "events": [
                        {"at": "2024-06-02T16:40:00+02:00", "location": "Leipzig hub", "code": "picked_up"},
                        {"at": "2024-06-03T06:15:00+02:00", "code": "in_transit"},
                    ],
                }
            ],
            "coupon": None,
            "notes": "Bitte beim Nachbarn abgeben, falls niemand öffnet.",
            "gift": False,
            "metadata": {"campaign": "summer-24", "affiliate": "none"},
            "created_at": "2024-06-01T09:12:44Z",
            "updated_at": "2024-06-02T16:41:02Z",
        },
        "links": {
            "self": {"href": "/api/v2/orders/3fa85f64", "method": "GET"},
            "customer": {"href": "/api/v2/customers/c56a4180", "method": "GET"},
        },
        "warnings": [{"code": "ADDRESS_UNVERIFIED", "message": "Shipping address could not be verified."}],
        "rate_limit": {"limit": 1000, "remaining": 998, "reset_at": "2024-06-02T17:00:00Z"},
    }
    minimal = {
        "api_version": "2024-06-01",
        "request_id": "00000000-0000-4000-8000-000000000000",
        "status": "partial",
        "order": {
            "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "number": "ORD-00000001",
            "status": "draft",
            "customer": {
                "id": "16fd2706-8baf-433b-82eb-8c7fada847da",
                "email": "ops@example.com",
                "name": "Ops",
                "tier": "enterprise",
                "billing_address": {
                    "line1": "1 Infinite Loop",
                    "city": "Cupertino",
                    "postal_code": "95014",
                    "country": "US",
                },
                "created_at": "2020-01-01T00:00:00Z",
            },
            "items": [
                {
                    "line": 1,
                    "sku": "SRV-0001",
                    "name": "Support plan",
                    "quantity": 12,
                    "unit_price": {"amount": "1500.00", "currency": "USD"},
                    "tax_code": "exempt",
                }
            ],
            "subtotal": {"amount": "18000.00", "currency": "USD"},
            "tax": {"amount": "0.00", "currency": "USD"},
            "total": {"amount": "18000.00", "currency": "USD"},
            "payment": {"method": "invoice", "due_date": "2024-07-31"},
            "created_at": "2024-06-30T23:59:59Z",
        },
        "links": {"self": {"href": "/api/v2/orders/7c9e6679", "method": "GET"}},
    }
    return SchemaCase(
        "openapi_like",
        "a long OpenAPI-like response: 10 components ($defs), ~80 properties, nested arrays, oneOf, formats",
        schema,
        (full, minimal),
    )


_CASES.append(_openapi_like())

SCHEMAS: dict[str, SchemaCase] = {case.name: case for case in _CASES}
"""The corpus by name, easiest first."""


# --- self-check -------------------------------------------------------------------------------------------

_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _format_checker() -> Any:
    """jsonschema's draft 2020-12 format checker, with an RFC 3339 ``date-time`` check when the optional
    ``rfc3339-validator`` package (which jsonschema uses for it) is missing."""
    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker(list(Draft202012Validator.FORMAT_CHECKER.checkers))
    checker.checkers.update(Draft202012Validator.FORMAT_CHECKER.checkers)
    if "date-time" not in checker.checkers:

        @checker.checks("date-time", raises=ValueError)
        def _date_time(value: object) -> bool:
            if not isinstance(value, str):
                return True
            if not _DATE_TIME_RE.match(value):
                return False
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return True

    return checker


def _resolve(root: JsonSchema, ref: str) -> JsonSchema:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are used in the corpus, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def _order_errors(root: JsonSchema, schema: JsonSchema, value: Any, path: str) -> list[str]:
    """Where ``value``'s keys are not in ``schema``'s ``properties`` order (declared keys first)."""
    if isinstance(schema, bool):
        return []
    if "$ref" in schema:
        errors = _order_errors(root, _resolve(root, schema["$ref"]), value, path)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return errors + (_order_errors(root, rest, value, path) if rest else [])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            from jsonschema import Draft202012Validator

            defs = root.get("$defs", {}) if isinstance(root, dict) else {}
            branches = [
                b for b in schema[combinator] if Draft202012Validator({"$defs": defs, **b}).is_valid(value)
            ]
            if not any(not _order_errors(root, b, value, path) for b in branches):
                return [f"{path}: no {combinator} branch takes the keys in order"]
    errors: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        declared = list(schema["properties"])
        positions = [declared.index(k) if k in declared else len(declared) for k in value]
        if positions != sorted(positions):
            errors.append(f"{path}: keys {list(value)} are not in properties order {declared}")
        for key, item in value.items():
            sub = schema["properties"].get(key, schema.get("additionalProperties", True))
            errors += _order_errors(root, sub, item, f"{path}/{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            errors += _order_errors(root, schema["additionalProperties"], item, f"{path}/{key}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += _order_errors(root, sub, item, f"{path}/{i}")
    return errors


def check_corpus(cases: Iterable[SchemaCase] | None = None) -> None:
    """Validate every instance against its schema (``jsonschema``, draft 2020-12, formats checked) and
    check that object keys follow the schema's ``properties`` order.

    Raises ``ValueError`` naming the schema, the instance and the first problem.
    """
    from jsonschema import Draft202012Validator

    checker = _format_checker()
    for case in SCHEMAS.values() if cases is None else cases:
        Draft202012Validator.check_schema(case.schema)  # type: ignore[arg-type]
        validator = Draft202012Validator(case.schema, format_checker=checker)
        if not case.instances:
            raise ValueError(f"{case.name}: no instances")
        for i, instance in enumerate(case.instances):
            error = next(iter(validator.iter_errors(instance)), None)
            if error is not None:
                raise ValueError(f"{case.name}[{i}] is not valid: {error.message} at {error.json_path}")
            order = _order_errors(case.schema, case.schema, instance, "$")
            if order:
                raise ValueError(f"{case.name}[{i}]: {order[0]}")
            if json.loads(compact(instance)) != instance:
                raise ValueError(f"{case.name}[{i}] does not survive a JSON round trip")
