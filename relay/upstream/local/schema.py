"""Example values for JSON Schemas: the arguments the local server passes to a tool.

:func:`example_value` turns a tool's ``parameters`` schema into one value that validates
against it, the same value every time. The rules, in order:

1. A local ``$ref`` (``#``, ``#/$defs/...``) is followed, and ``allOf`` parts are merged, so
   the schemas pydantic and the Agents SDK produce (``$defs`` for nested models) work.
2. ``const``; else the first ``enum`` value; else ``default``; else the first of ``examples``
   (``default`` and ``examples`` are trusted to be valid, as their authors meant them).
3. ``anyOf`` / ``oneOf``: the first branch (with the schema's other keywords laid under it).
4. By ``type`` (the first of a list; guessed from the keywords present when absent):

   - ``object``: its ``required`` properties, each an example of its own schema (plus
     optional ones, in order, up to ``minProperties``);
   - ``array``: ``minItems`` examples of ``items`` (``prefixItems`` for the leading ones);
     under ``uniqueItems`` successive items are varied (the next enum value, ``example2``...);
   - ``string``: ``"example"``, or a sample of a known ``format`` (date, email, uri...),
     padded or cut to ``minLength`` / ``maxLength``;
   - ``integer`` / ``number``: 0, moved inside ``minimum`` / ``maximum`` (and the exclusive
     bounds), then onto ``multipleOf``;
   - ``boolean``: false; ``null``: null.

Not honoured: ``pattern``, ``not``, ``if``/``then``/``else``, ``dependentRequired`` and
remote ``$ref``. A schema that is not an object (or ``true``) gets ``"example"``. Whatever
JSON it is given, :func:`example_value` returns (within :data:`MAX_VALUES` values and
:data:`MAX_DEPTH` levels) and never raises: the server calls it on clients' schemas.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

#: How deep references and nesting are followed; deeper (recursive) schemas get null.
MAX_DEPTH = 32
#: How many values one example may hold, and how long a string: a schema asking for more
#: (``minItems`` in the millions) gets null or a shorter string instead of the memory.
MAX_VALUES = 10_000
MAX_STRING = 65_536

#: Samples for the string formats JSON Schema names (and validators may check).
_FORMATS: dict[str, str] = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T12:00:00Z",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "regex": ".*",
    "json-pointer": "/example",
}

_OBJECT_KEYS = ("properties", "required", "additionalProperties", "minProperties")
_ARRAY_KEYS = ("items", "prefixItems", "minItems", "maxItems", "uniqueItems")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def example_value(schema: Any) -> Any:
    """One JSON value that validates against ``schema``, following the module's rules."""
    root = schema if isinstance(schema, Mapping) else {}
    return _Examples(root).value(schema, 0, 0)


def example_arguments(parameters: Any) -> dict[str, Any]:
    """Example arguments for a function tool: always a JSON object, ``{}`` when the tool
    declares no parameters (or parameters that are not an object)."""
    value = example_value(parameters) if isinstance(parameters, Mapping) else {}
    return value if isinstance(value, dict) else {}


class _Examples:
    """Examples within one root schema (what ``$ref`` resolves against)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root
        self._budget = MAX_VALUES
        self._builders: dict[str, Callable[[Mapping[str, Any], int, int], Any]] = {
            "object": self._object,
            "array": self._array,
            "string": lambda schema, depth, variant: _string(schema, variant),
            "integer": lambda schema, depth, variant: _number(schema, variant, integer=True),
            "number": lambda schema, depth, variant: _number(schema, variant, integer=False),
            "boolean": lambda schema, depth, variant: variant % 2 == 1,
            "null": lambda schema, depth, variant: None,
        }

    def value(self, schema: Any, depth: int, variant: int) -> Any:
        """An example of ``schema``; ``variant`` > 0 asks for a different one if possible."""
        self._budget -= 1
        if depth > MAX_DEPTH or self._budget < 0:
            return None
        if not isinstance(schema, Mapping):
            return "example"
        schema = self._flatten(schema, depth)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return copy.deepcopy(enum[variant % len(enum)])
        if "default" in schema:
            return copy.deepcopy(schema["default"])
        examples = schema.get("examples")
        if isinstance(examples, list) and examples:
            return copy.deepcopy(examples[variant % len(examples)])
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                return self.value(_merge(rest, branches[0]), depth + 1, variant)
        return self._builders[_type_of(schema)](schema, depth, variant)

    def _flatten(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """``schema`` with its ``$ref`` followed and its ``allOf`` merged in."""
        self._budget -= 1
        if self._budget < 0:  # e.g. allOf: [{$ref: "#"}, {$ref: "#"}] doubles each level
            return {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self._resolve(ref)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if depth >= MAX_DEPTH or not isinstance(target, Mapping):
                return rest
            schema = _merge(self._flatten(target, depth + 1), rest)
        parts = schema.get("allOf")
        if isinstance(parts, list):
            merged: Mapping[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, Mapping) and depth < MAX_DEPTH:
                    merged = _merge(merged, self._flatten(part, depth + 1))
            schema = merged
        return schema

    def _resolve(self, ref: str) -> Any:
        """A local JSON pointer reference (``#/a/b``) into the root schema, or None."""
        if not ref.startswith("#"):
            return None
        node: Any = self._root
        for token in ref[1:].split("/")[1:]:
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping):
                node = node.get(key)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return None
        return node

    def _object(self, schema: Mapping[str, Any], depth: int, variant: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        extra = schema.get("additionalProperties")
        required = schema.get("required")
        names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
        wanted = schema.get("minProperties")
        if isinstance(wanted, int):
            names += [n for n in properties if n not in names][:max(0, wanted - len(names))]
        out: dict[str, Any] = {}
        for name in names:
            sub = properties.get(name, extra if isinstance(extra, Mapping) else {})
            out[name] = self.value(sub, depth + 1, variant)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int, variant: int) -> list[Any]:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # draft 4-7 tuples: items is the prefix
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        count = schema.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 0
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        for index in range(count):
            if self._budget <= 0:
                break
            sub = prefix[index] if index < len(prefix) else items
            out.append(self.value(sub if isinstance(sub, Mapping) else {}, depth + 1,
                                  index if unique else variant))
        return out


def _type_of(schema: Mapping[str, Any]) -> str:
    """The JSON type to build: the declared one (first of a list), else guessed."""
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if isinstance(t, str)), None)
    if isinstance(declared, str) and declared in (
        "object", "array", "string", "integer", "number", "boolean", "null"
    ):
        return declared
    for keys, kind in ((_OBJECT_KEYS, "object"), (_ARRAY_KEYS, "array"),
                       (_NUMBER_KEYS, "number")):
        if any(key in schema for key in keys):
            return kind
    return "string"


def _merge(base: Mapping[str, Any], over: Any) -> dict[str, Any]:
    """Two schemas that must both hold, as one: ``properties`` merge, ``required`` unite,
    any other keyword of ``over`` wins (enough for the schemas tools declare)."""
    merged = dict(base)
    if not isinstance(over, Mapping):
        return merged
    for key, value in over.items():
        old = merged.get(key)
        if key == "properties" and isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = {**old, **value}
        elif key == "required" and isinstance(old, list) and isinstance(value, list):
            merged[key] = old + [name for name in value if name not in old]
        else:
            merged[key] = value
    return merged


def _string(schema: Mapping[str, Any], variant: int) -> str:
    fmt = schema.get("format")
    value = _FORMATS.get(fmt, "example") if isinstance(fmt, str) else "example"
    if variant and value == "example":
        value = f"example{variant + 1}"
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if isinstance(shortest, int) and len(value) < shortest:
        value += "x" * (min(shortest, MAX_STRING) - len(value))
    if isinstance(longest, int) and len(value) > longest:
        # A variant keeps its end, where the digits that make it differ are.
        value = (value[-longest:] if variant else value[:longest]) if longest else ""
    return value


def _number(schema: Mapping[str, Any], variant: int, *, integer: bool) -> int | float:
    """``variant`` (0 at first) moved inside the bounds, then onto ``multipleOf``."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum")
    if integer:  # the integers inside open bounds lie within closed ones
        if low is not None:
            low, low_open = (math.floor(low) + 1 if low_open else math.ceil(low)), False
        if high is not None:
            high, high_open = (math.ceil(high) - 1 if high_open else math.floor(high)), False
    value: float = variant
    if low is not None and (value < low or (low_open and value <= low)):
        value = _inside(low, high, low_open, step=1.0)
    if high is not None and (value > high or (high_open and value >= high)):
        value = _inside(high, low, high_open, step=-1.0)
    step = _as_number(schema.get("multipleOf"))
    if step is not None and step > 0 and math.isfinite(value / step):
        snapped = math.ceil(value / step) * step
        if high is not None and snapped > high:
            snapped = math.floor(value / step) * step
        value = snapped
    if integer or float(value).is_integer():
        return int(value)
    return value


def _inside(bound: float, other: float | None, is_open: bool, *, step: float) -> float:
    """The value nearest ``bound`` that a number may take: the bound itself, or for an
    open bound the midpoint to the other bound (or one step inside when there is none)."""
    if not is_open:
        return bound
    return (bound + other) / 2 if other is not None else bound + step


def _bound(schema: Mapping[str, Any], closed: str, open_: str) -> tuple[float | None, bool]:
    """One side's bound and whether it is exclusive; draft 4 spells exclusive as a boolean
    beside the closed keyword, later drafts as a number of its own."""
    inclusive = _as_number(schema.get(closed))
    exclusive = _as_number(schema.get(open_))
    if exclusive is not None:
        tighter = inclusive is not None and (
            inclusive > exclusive if closed == "minimum" else inclusive < exclusive)
        return (inclusive, False) if tighter else (exclusive, True)
    return inclusive, schema.get(open_) is True


def _as_number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans, and the
    ``Infinity`` and ``NaN`` Python's JSON reader lets in)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            return None
        return number if math.isfinite(number) else None
    return None
