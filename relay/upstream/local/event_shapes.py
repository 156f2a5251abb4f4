"""The JSON types of every client event's fields, as the Realtime API documents them, and
the check the local server runs on each event before handling it.

The handlers read fields as the documentation shapes them (``response.audio.output`` is
an object, ``audio_end_ms`` an integer); a client that sends a number where an object
belongs gets ``invalid_type`` naming the field, as from the hosted service, and the
session goes on. Only types are checked here, first: which fields exist and what values
they may take are :mod:`.field_checks`' and the handlers' to say.
A field the documentation marks optional may be ``null`` (it is then unset); a required
one may not. The tests hold this table to the official ``openai`` package's models of the
client events (``openai.types.realtime``): every field they declare is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequest
from ...protocol.json_input import json_path


@dataclass(frozen=True)
class Obj:
    """A JSON object whose named fields have these shapes (others pass unchecked)."""

    fields: Mapping[str, Shape]
    #: Fields that may not be null when present.
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Arr:
    """A JSON array of ``item``."""

    item: Shape


@dataclass(frozen=True)
class Map:
    """A JSON object of any keys, each value ``value``."""

    value: Shape


@dataclass(frozen=True)
class AnyOf:
    """Any of ``shapes`` (they differ in JSON type: the value's type picks one)."""

    shapes: tuple[Shape, ...] = field(default_factory=tuple)


#: A JSON type by name ("string", "integer", "number", "boolean", "object", "array",
#: "any"), or a structure of them.
Shape = str | Obj | Arr | Map | AnyOf

STR, INT, NUM, BOOL = "string", "integer", "number", "boolean"
OBJECT, ANY = "object", "any"

CONTENT_PART = Obj({"type": STR, "text": STR, "audio": STR, "transcript": STR, "image_url": STR,
                    "detail": STR})
ITEM = Obj({
    "id": STR, "type": STR, "object": STR, "status": STR, "role": STR,
    "content": Arr(CONTENT_PART),
    # function_call, function_call_output
    "name": STR, "arguments": STR, "call_id": STR, "output": STR,
    # MCP items
    "server_label": STR, "approval_request_id": STR, "approve": BOOL, "reason": STR,
    "tools": Arr(Obj({"name": STR, "description": STR, "input_schema": ANY,
                      "annotations": ANY}, required=("name",))),
    "error": Obj({"type": STR, "code": INT, "message": STR}),
})
AUDIO_FORMAT = Obj({"type": STR, "rate": INT})
VOICE = AnyOf((STR, Obj({"id": STR}, required=("id",))))
TURN_DETECTION = Obj({
    "type": STR, "threshold": NUM, "prefix_padding_ms": INT, "silence_duration_ms": INT,
    "idle_timeout_ms": INT, "create_response": BOOL, "interrupt_response": BOOL, "eagerness": STR,
})
TRANSCRIPTION = Obj({"model": STR, "language": STR, "languages": Arr(STR), "prompt": STR,
                     "keywords": Arr(STR), "delay": STR})
AUDIO_INPUT = Obj({"format": AUDIO_FORMAT, "transcription": TRANSCRIPTION,
                   "noise_reduction": Obj({"type": STR, "strength": NUM}),
                   "turn_detection": TURN_DETECTION})
AUDIO_OUTPUT = Obj({"format": AUDIO_FORMAT, "voice": VOICE, "speed": NUM})
#: Which of an MCP server's tools a rule covers.
TOOL_FILTER = Obj({"read_only": BOOL, "tool_names": Arr(STR)})
TOOL = Obj({
    "type": STR, "name": STR, "description": STR, "parameters": ANY,
    # MCP tools
    "server_label": STR, "server_url": STR, "server_description": STR, "authorization": STR,
    "connector_id": STR, "tunnel_id": STR, "headers": Map(STR), "defer_loading": BOOL,
    "allowed_callers": Arr(STR), "allowed_tools": AnyOf((Arr(STR), TOOL_FILTER)),
    "require_approval": AnyOf((STR, Obj({"always": TOOL_FILTER, "never": TOOL_FILTER}))),
})
TOOL_CHOICE = AnyOf((STR, Obj({"type": STR, "name": STR, "server_label": STR})))
MAX_OUTPUT_TOKENS = AnyOf((INT, STR))  # an integer, or "inf"
#: A prompt variable: text, or an input text, image or file (their fields merged).
PROMPT_INPUT = Obj({
    "type": STR, "text": STR, "detail": STR, "image_url": STR, "file_id": STR,
    "file_data": STR, "file_url": STR, "filename": STR,
    "prompt_cache_breakpoint": Obj({"mode": STR, "ttl": STR}),
})
PROMPT = Obj({"id": STR, "version": STR, "variables": Map(AnyOf((STR, PROMPT_INPUT)))})
REASONING = Obj({"effort": STR})
SESSION = Obj({
    "type": STR, "model": STR, "instructions": STR, "output_modalities": Arr(STR),
    "audio": Obj({"input": AUDIO_INPUT, "output": AUDIO_OUTPUT}),
    "include": Arr(STR), "max_output_tokens": MAX_OUTPUT_TOKENS, "parallel_tool_calls": BOOL,
    "prompt": PROMPT, "reasoning": REASONING, "tool_choice": TOOL_CHOICE,
    "tools": Arr(TOOL),
    "tracing": AnyOf((STR, Obj({"workflow_name": STR, "group_id": STR, "metadata": ANY}))),
    "truncation": AnyOf((STR, Obj({"type": STR, "retention_ratio": NUM,
                                  "token_limits": Obj({"post_instructions": INT})}))),
})
RESPONSE = Obj({
    "conversation": STR, "input": Arr(ITEM), "instructions": STR, "metadata": Map(STR),
    "output_modalities": Arr(STR), "max_output_tokens": MAX_OUTPUT_TOKENS,
    "audio": Obj({"output": Obj({"format": AUDIO_FORMAT, "voice": VOICE})}),
    "parallel_tool_calls": BOOL, "prompt": PROMPT, "reasoning": REASONING,
    "tool_choice": TOOL_CHOICE, "tools": Arr(TOOL),
})

#: Every client event's shape, by type.
CLIENT_EVENTS: dict[str, Obj] = {
    "session.update": Obj({"event_id": STR, "session": SESSION}, required=("session",)),
    "input_audio_buffer.append": Obj({"event_id": STR, "audio": STR}, required=("audio",)),
    "input_audio_buffer.commit": Obj({"event_id": STR}),
    "input_audio_buffer.clear": Obj({"event_id": STR}),
    "output_audio_buffer.clear": Obj({"event_id": STR}),
    "conversation.item.create": Obj({"event_id": STR, "previous_item_id": STR, "item": ITEM},
                                    required=("item",)),
    "conversation.item.retrieve": Obj({"event_id": STR, "item_id": STR}, required=("item_id",)),
    "conversation.item.delete": Obj({"event_id": STR, "item_id": STR}, required=("item_id",)),
    "conversation.item.truncate": Obj(
        {"event_id": STR, "item_id": STR, "content_index": INT, "audio_end_ms": INT},
        required=("item_id", "content_index", "audio_end_ms")),
    "response.create": Obj({"event_id": STR, "response": RESPONSE}),
    "response.cancel": Obj({"event_id": STR, "response_id": STR}),
}


def check_event(event: Mapping[str, Any]) -> None:
    """Raise ``invalid_type`` (:class:`InvalidRequest`, ``param`` the field's path) for
    the first field of ``event`` whose JSON type its documented shape does not allow."""
    shape = CLIENT_EVENTS.get(str(event.get("type")))
    if shape is not None:
        _check_object(event, shape, ())


def _check(value: Any, shape: Shape, path: tuple[str | int, ...], *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if isinstance(shape, str):
        if not _is(value, shape):
            raise _wrong(path, shape, value)
    elif isinstance(shape, Obj):
        if not isinstance(value, dict):
            raise _wrong(path, OBJECT, value)
        _check_object(value, shape, path)
    elif isinstance(shape, Map):
        if not isinstance(value, dict):
            raise _wrong(path, OBJECT, value)
        for key, inner in value.items():
            _check(inner, shape.value, (*path, key), nullable=False)
    elif isinstance(shape, Arr):
        if not isinstance(value, list):
            raise _wrong(path, "array", value)
        for index, inner in enumerate(value):
            _check(inner, shape.item, (*path, index), nullable=False)
    else:
        for option in shape.shapes:
            if _is(value, _kind(option)):
                _check(value, option, path, nullable=False)
                return
        raise _wrong(path, " or ".join(_kind(option) for option in shape.shapes), value)


def _check_object(value: Mapping[str, Any], shape: Obj, path: tuple[str | int, ...]) -> None:
    for name, inner_shape in shape.fields.items():
        if name in value:
            _check(value[name], inner_shape, (*path, name),
                   nullable=name not in shape.required)


def _kind(shape: Shape) -> str:
    if isinstance(shape, str):
        return shape
    return "array" if isinstance(shape, Arr) else OBJECT


def _is(value: Any, kind: str) -> bool:
    if kind == ANY:
        return True
    if kind == "integer":
        return type(value) is int
    if kind == "number":
        return type(value) in (int, float)
    return type(value) is _PYTHON_TYPES[kind]


_PYTHON_TYPES: dict[str, type] = {"string": str, "boolean": bool, "object": dict,
                                  "array": list}

_ARTICLES = {"integer": "an integer", "object": "an object", "array": "an array"}


def _name(kind: str) -> str:
    return " or ".join(_ARTICLES.get(part, f"a {part}") for part in kind.split(" or "))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _wrong(path: tuple[str | int, ...], expected: str, value: Any) -> InvalidRequest:
    where = json_path(None, path)
    return InvalidRequest(
        f"Invalid type for '{where}': expected {_name(expected)}, but got "
        f"{_name(_json_type(value))} instead.", code="invalid_type", param=where)
