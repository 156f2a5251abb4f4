"""Example values for JSON Schemas (a tool's arguments), checked by a real validator."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import validators

from relay.upstream.local.schema import MAX_STRING, MAX_VALUES, example_arguments, example_value

Schema = dict[str, Any]


def valid(schema: Schema, value: Any) -> bool:
    """Whether ``value`` validates against ``schema`` under the schema's own draft."""
    validator = validators.validator_for(schema)(schema)
    return not list(validator.iter_errors(value))


WEATHER: Schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "where"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "detail": {"type": "boolean"},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}


def test_example_value_fills_required_properties_only() -> None:
    value = example_value(WEATHER)
    assert value == {"city": "example", "unit": "celsius", "days": 1}
    assert valid(WEATHER, value)


def test_example_value_fills_nested_objects() -> None:
    schema: Schema = {
        "type": "object",
        "properties": {
            "trip": {
                "type": "object",
                "properties": {
                    "from": {"type": "object", "properties": {"lat": {"type": "number"},
                                                              "lon": {"type": "number"}},
                             "required": ["lat", "lon"]},
                    "mode": {"enum": ["walk", "bike"]},
                },
                "required": ["from", "mode"],
            },
        },
        "required": ["trip"],
    }
    value = example_value(schema)
    assert value == {"trip": {"from": {"lat": 0, "lon": 0}, "mode": "walk"}}
    assert valid(schema, value)


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "enum": ["b", "a"]}, "b"),
    ({"type": "string", "default": "metric"}, "metric"),
    ({"type": "integer", "examples": [42, 7]}, 42),
    ({"const": "fixed", "default": "other"}, "fixed"),
    ({"enum": [3, 4], "default": 4}, 3),
    ({"type": "integer", "default": 5, "examples": [6]}, 5),
])
def test_example_value_prefers_const_enum_default_examples(schema: Schema,
                                                          expected: Any) -> None:
    value = example_value(schema)
    assert value == expected and valid(schema, value)


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string"}, "example"),
    ({"type": "number"}, 0),
    ({"type": "integer"}, 0),
    ({"type": "boolean"}, False),
    ({"type": "null"}, None),
    ({"type": ["integer", "null"]}, 0),
    ({"type": ["null", "string"]}, None),
    ({"anyOf": [{"type": "boolean"}, {"type": "string"}]}, False),
    ({"oneOf": [{"type": "string", "format": "date"}, {"type": "integer"}]}, "2024-01-01"),
    ({}, "example"),
])
def test_example_value_placeholders_by_type(schema: Schema, expected: Any) -> None:
    value = example_value(schema)
    assert value == expected and valid(schema, value)


@pytest.mark.parametrize("schema", [
    {"type": "integer", "minimum": 3, "maximum": 9},
    {"type": "integer", "exclusiveMinimum": 3},
    {"type": "integer", "maximum": -4, "multipleOf": 3},
    {"type": "integer", "minimum": 5, "multipleOf": 4},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    {"type": "number", "minimum": 2.5},
    {"type": "number", "exclusiveMaximum": -10},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number",
     "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
    {"type": "string", "minLength": 12},
    {"type": "string", "maxLength": 3},
    {"type": "string", "format": "email", "maxLength": 40},
    {"type": "string", "format": "date-time"},
])
def test_example_value_respects_bounds(schema: Schema) -> None:
    value = example_value(schema)
    assert valid(schema, value), value


def test_example_value_arrays_respect_min_items_and_items() -> None:
    schema: Schema = {"type": "array", "minItems": 2,
                      "items": {"type": "object", "properties": {"n": {"type": "integer"}},
                                "required": ["n"]}}
    value = example_value(schema)
    assert value == [{"n": 0}, {"n": 0}] and valid(schema, value)
    assert example_value({"type": "array", "items": {"type": "string"}}) == []


@pytest.mark.parametrize("items", [{"type": "string"}, {"type": "integer"},
                                   {"enum": ["x", "y", "z"]}])
def test_example_value_unique_items_differ(items: Schema) -> None:
    schema: Schema = {"type": "array", "items": items, "minItems": 3, "uniqueItems": True}
    value = example_value(schema)
    assert len(value) == 3 and valid(schema, value), value


def test_example_value_tuples_follow_prefix_items() -> None:
    schema: Schema = {"type": "array", "minItems": 3,
                      "prefixItems": [{"type": "integer"}, {"const": "b"}],
                      "items": {"type": "boolean"}}
    value = example_value(schema)
    assert value == [0, "b", False] and valid(schema, value)


def test_example_value_follows_refs_and_all_of() -> None:
    # The shape pydantic (and so the Agents SDK) gives a tool taking a nested model.
    schema: Schema = {
        "$defs": {
            "Place": {"type": "object", "title": "Place",
                      "properties": {"name": {"type": "string"},
                                     "kind": {"$ref": "#/$defs/Kind"}},
                      "required": ["name", "kind"], "additionalProperties": False},
            "Kind": {"type": "string", "enum": ["city", "village"]},
        },
        "type": "object",
        "properties": {
            "place": {"$ref": "#/$defs/Place"},
            "near": {"anyOf": [{"$ref": "#/$defs/Place"}, {"type": "null"}]},
            "limits": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}},
                                  "required": ["a"]},
                                 {"properties": {"b": {"const": True}}, "required": ["b"]}]},
        },
        "required": ["place", "near", "limits"],
        "additionalProperties": False,
    }
    value = example_value(schema)
    place = {"name": "example", "kind": "city"}
    assert value == {"place": place, "near": place, "limits": {"a": 0, "b": True}}
    assert valid(schema, value)


def test_example_value_stops_at_recursion() -> None:
    schema: Schema = {"type": "object", "properties": {"next": {"$ref": "#"}},
                      "required": ["next"]}
    value = example_value(schema)  # unsatisfiable: it must only end, not validate
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert 1 < depth <= 64


def test_example_arguments_are_always_an_object() -> None:
    assert example_arguments(None) == {}
    assert example_arguments({"type": "object", "properties": {}}) == {}
    assert example_arguments({"type": "string"}) == {}
    assert example_arguments(WEATHER) == example_value(WEATHER)


def test_example_value_bounds_what_hostile_schemas_ask_for() -> None:
    # Clients' schemas reach the server: none may cost unbounded memory or raise.
    nested: Schema = {"type": "array", "minItems": 10**9,
                      "items": {"type": "array", "minItems": 10**9}}
    outer = example_value(nested)
    assert len(outer) + sum(len(inner) for inner in outer if inner is not None) < MAX_VALUES
    assert len(example_value({"type": "string", "minLength": 10**12})) == MAX_STRING
    assert example_value({"type": "integer", "minimum": 10**400}) == 0
    assert example_value({"type": "number", "maximum": float("-inf")}) == 0
    assert example_value({"type": "number", "minimum": 1, "multipleOf": 1e-320}) == 1
    assert example_value({"type": "object", "required": 7}) == {}
    doubling: Schema = {"allOf": [{"$ref": "#"}, {"$ref": "#"}], "type": "string"}
    assert example_value(doubling) == "example"
