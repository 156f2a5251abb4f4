"""The embedded server's type checks, held to the official ``openai`` package's models of
the client events (``openai.types.realtime.RealtimeClientEvent``): at every field those
models declare, a value of a JSON type they do not allow is refused with ``invalid_type``
naming the field, one they allow is not, and the session goes on either way. The relay's
own call core takes the same events without an exception.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.realtime import RealtimeClientEvent

from relay.protocol.realtime.call_core import CallCore
from relay.upstream.local.local_session import LocalSession

CI = bool(os.environ.get("CI"))
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=CI,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

#: A value of each JSON type.
SAMPLES: dict[str, Any] = {"string": "x", "integer": 7, "number": 2.5, "boolean": True,
                           "object": {}, "array": []}
#: Path segments: a field name, or "[]" for any item of an array, "{}" for any value of
#: a map.
Path = tuple[str, ...]


def _kinds_of(tp: Any) -> set[str]:
    """The JSON types a value of the annotation ``tp`` may have ("any" for any)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _kinds_of(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds_of(arg) for arg in get_args(tp) if arg is not type(None)))
    if origin is Literal:
        return set().union(*(_kinds_of(type(value)) for value in get_args(tp)))
    if origin in (list, typing.List):  # noqa: UP006
        return {"array"}
    if origin in (dict, typing.Dict):  # noqa: UP006
        return {"object"}
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return {"object"}
    return {str: {"string"}, bool: {"boolean"}, int: {"integer"},
            float: {"number", "integer"}}.get(tp, {"any"})


def _fields(tp: Any, path: Path, depth: int = 0) -> Iterator[tuple[Path, set[str]]]:
    """Every field under the annotation ``tp`` at ``path``, with the JSON types it takes."""
    if depth > 8:
        return
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is typing.Annotated:
        yield from _fields(args[0], path, depth)
    elif origin in (Union, types.UnionType):
        for arg in args:
            yield from _fields(arg, path, depth)
    elif origin in (list, typing.List):  # noqa: UP006
        yield (*path, "[]"), _kinds_of(args[0])
        yield from _fields(args[0], (*path, "[]"), depth + 1)
    elif origin in (dict, typing.Dict):  # noqa: UP006
        yield (*path, "{}"), _kinds_of(args[1])
        yield from _fields(args[1], (*path, "{}"), depth + 1)
    elif isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        for name, info in tp.model_fields.items():
            yield (*path, name), _kinds_of(info.annotation)
            yield from _fields(info.annotation, (*path, name), depth + 1)


def _documented() -> dict[str, dict[Path, set[str]]]:
    """Each client event type's fields (not ``type``) and the JSON types each takes (the
    union over the models' variants: an item's ``content`` is the same field whatever the
    item's type)."""
    shapes: dict[str, dict[Path, set[str]]] = {}
    for model in get_args(get_args(RealtimeClientEvent)[0]):
        [kind] = get_args(model.model_fields["type"].annotation)
        fields = shapes.setdefault(kind, {})
        for path, kinds in _fields(model, ()):
            if path != ("type",):
                fields.setdefault(path, set()).update(kinds)
    return shapes


DOCUMENTED = _documented()
#: output_audio_buffer.clear exists only on WebRTC: the relay handles it, never a server.
SERVED = sorted(set(DOCUMENTED) - {"output_audio_buffer.clear"})
CASES = [(kind, path, kinds) for kind in SERVED
         for path, kinds in sorted(DOCUMENTED[kind].items()) if "any" not in kinds]


def _param(path: Path) -> str:
    out = ""
    for part in path:
        if part == "[]":
            out += "[0]"
        else:
            part = "k" if part == "{}" else part
            out = f"{out}.{part}" if out else part
    return out


def _event(kind: str, path: Path, value: Any) -> dict[str, Any]:
    """A ``kind`` event with ``value`` at ``path`` (the containers on the way made)."""
    event: dict[str, Any] = {"type": kind}
    node: Any = event
    for part, following in zip(path, (*path[1:], None), strict=True):
        child: Any = value if following is None else [] if following == "[]" else {}
        if part == "[]":
            node.append(child)
        else:
            node["k" if part == "{}" else part] = child
        node = child
    return event


def _errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["error"] for e in events if e["type"] == "error"]


def _goes_on(session: LocalSession) -> None:
    assert [e["type"] for e in session.receive_event(
        {"type": "input_audio_buffer.clear"})] == ["input_audio_buffer.cleared"]


def test_event_shapes_cover_every_client_event_of_the_official_models() -> None:
    from relay.upstream.local.event_shapes import CLIENT_EVENTS

    assert set(DOCUMENTED) == set(CLIENT_EVENTS)
    assert len(CASES) > 150  # the walk found the models' fields


@pytest.mark.parametrize(("kind", "path", "kinds"), CASES,
                         ids=[f"{kind}:{_param(path)}" for kind, path, _ in CASES])
def test_event_shapes_refuse_a_wrong_type_at_every_documented_field(
        kind: str, path: Path, kinds: set[str]) -> None:
    session = LocalSession()
    session.start()
    param = _param(path)
    for json_type, value in SAMPLES.items():
        errors = _errors(session.receive_event(_event(kind, path, value)))
        wrong = [e for e in errors if e["code"] == "invalid_type" and e["param"] == param]
        if json_type in kinds or (json_type == "integer" and "number" in kinds):
            assert not wrong, (json_type, wrong)
        else:
            assert wrong, (json_type, errors)
            assert f"'{param}'" in wrong[0]["message"]
        _goes_on(session)


@st.composite
def wrong_events(draw: st.DrawFn) -> dict[str, Any]:
    """A client event with a value of any JSON type (null too) at a documented field."""
    kind, path, _ = draw(st.sampled_from(CASES))
    value = draw(st.sampled_from([*SAMPLES.values(), None, -1, 1e300, "", [None], {"": 0}]))
    return _event(kind, path, value)


@FUZZ
@given(batch=st.lists(wrong_events(), min_size=1, max_size=6))
def test_event_shapes_any_type_anywhere_never_ends_a_session(
        batch: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    session = LocalSession(mode="parrot")
    session.start()
    core = CallCore("rtc_shapes", {"type": "realtime"}, max_playout_samples=24000,
                    clock=lambda: 0.0)
    core.start()
    core.channel_opened()
    core.drain_upstream()
    for event in batch:
        for answer in session.receive_event(event):
            assert answer["type"] != "error" or answer["error"]["code"] != "server_error", answer
        while session.next_response_chunk() is not None:
            pass
        core.client_message(json.dumps(event))
        for sent in core.drain_upstream():
            json.dumps(sent)
        core.drain_client()
        _goes_on(session)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
