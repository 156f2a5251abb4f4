"""Function calling in the local server: the rules on LocalSession (no event loop), and
one agent's tool loop over a real WebSocket.

Every event the server emits here is checked against the official ``openai`` package's
models of the Realtime server events, and every call's arguments against the tool's schema.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from jsonschema import validators
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection, connect

from relay.upstream.local import LocalRealtimeServer, LocalSession
from relay.upstream.local.response import BEEP_TRANSCRIPT
from relay.upstream.local.tools import mentions

from .signals import tone

Event = dict[str, Any]

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather somewhere.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "when": {"type": "object", "properties": {"day": {"type": "integer", "minimum": 1}},
                     "required": ["day"]},
        },
        "required": ["city", "unit", "when"],
        "additionalProperties": False,
    },
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"}

CALL_EVENTS = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]


def conforming(events: list[Event]) -> list[Event]:
    """``events``, each validated against the official model of its type."""
    for event in events:
        SERVER_EVENT.validate_python(event)
    return events


def drain(session: LocalSession) -> list[Event]:
    events: list[Event] = []
    while (chunk := session.next_response_chunk()) is not None:
        events += chunk.events
    return conforming(events)


def send(session: LocalSession, event: Event) -> list[Event]:
    return conforming(session.receive_event(event))


def respond(session: LocalSession, **response: Any) -> list[Event]:
    """``response.create`` (with ``response`` overrides, if any) and all it sends."""
    event: Event = {"type": "response.create"}
    if response:
        event["response"] = response
    return send(session, event) + drain(session)


def kinds(events: list[Event]) -> list[str]:
    """Event types in order, repeated deltas collapsed into one."""
    out: list[str] = []
    for event in events:
        if not (out and out[-1] == event["type"] and event["type"].endswith(".delta")):
            out.append(event["type"])
    return out


def only(events: list[Event], kind: str) -> Event:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, kinds(events)
    return found[0]


def session_with(*tools: Event, choice: Any = "auto") -> LocalSession:
    session = LocalSession()
    [updated] = send(session, {"type": "session.update", "session": {
        "type": "realtime", "tools": list(tools), "tool_choice": choice}})
    assert updated["type"] == "session.updated"
    return session


def say(session: LocalSession, text: str) -> None:
    send(session, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def output(session: LocalSession, call_id: str, text: str) -> list[Event]:
    return send(session, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": text}})


def called(events: list[Event]) -> str | None:
    """The name of the function a response's events call, or None."""
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    return done[0]["name"] if done else None


def valid_arguments(tool: Event, arguments: str) -> bool:
    schema = tool["parameters"]
    validator = validators.validator_for(schema)(schema)
    return not list(validator.iter_errors(json.loads(arguments)))


@pytest.mark.parametrize(("text", "expected"), [
    ("please get_weather for Paris", True),
    ("GET_WEATHER", True),
    ("get_weather, then get_time.", True),
    ("(get_weather)", True),
    ("forget_weather", False),
    ("get_weather2 please", False),
    ("get-weather", False),
    ("", False),
])
def test_tools_mentions_matches_the_whole_name_in_any_case(text: str, expected: bool) -> None:
    assert mentions(text, "get_weather") is expected


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("get_weather", "get weather", True),
    ("get_weather", "what is the weather in paris", True),
    ("get_weather", "Weather, please.", True),
    ("getWeather", "the weather", True),
    ("get_weather", "whether or not", False),
    ("get_weather", "get me a coffee", False),
    ("get_weather", "the weatherman", False),
    ("lookup_order_status", "what is the status of my order", True),
    ("lookup_order_status", "where is my order", False),
    ("get", "get it", True),
])
def test_tools_mentions_matches_the_words_of_the_name(name: str, text: str,
                                                      expected: bool) -> None:
    assert mentions(text, name) is expected


def test_tools_auto_calls_the_function_named_in_the_latest_text() -> None:
    session = session_with(TIME, WEATHER)
    say(session, "Please Get_Weather for Paris")
    events = respond(session)
    assert kinds(events) == CALL_EVENTS
    added = only(events, "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["object"] == "realtime.item"
    assert (added["status"], added["arguments"], added["name"]) == (
        "in_progress", "", "get_weather")
    call_id = added["call_id"]
    assert call_id.startswith("call_")
    done = only(events, "response.function_call_arguments.done")
    response_id = only(events, "response.created")["response"]["id"]
    assert (done["call_id"], done["item_id"], done["response_id"], done["output_index"]) == (
        call_id, added["id"], response_id, 0)
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(e["delta"] for e in deltas) == done["arguments"]
    assert all(e["call_id"] == call_id and e["item_id"] == added["id"] for e in deltas)
    assert json.loads(done["arguments"]) == {"city": "example", "unit": "celsius",
                                             "when": {"day": 1}}
    assert valid_arguments(WEATHER, done["arguments"])
    final = only(events, "response.done")["response"]
    assert final["status"] == "completed"
    [item] = final["output"]
    assert item == only(events, "response.output_item.done")["item"]
    assert item == {"id": added["id"], "object": "realtime.item", "type": "function_call",
                    "status": "completed", "name": "get_weather", "call_id": call_id,
                    "arguments": done["arguments"]}
    assert [i.data for i in session.conversation][-1] == item


def test_tools_auto_without_a_mention_answers_as_before() -> None:
    session = session_with(WEATHER)
    say(session, "is it going to rain?")
    events = respond(session)
    assert called(events) is None
    transcript = only(events, "response.output_audio_transcript.done")["transcript"]
    assert transcript == BEEP_TRANSCRIPT


def test_tools_auto_reads_only_the_latest_user_message() -> None:
    session = session_with(WEATHER)
    say(session, "get_weather please")
    send(session, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_audio", "audio": base64.b64encode(tone(300)).decode()}]}})
    events = respond(session)
    assert called(events) is None
    assert only(events, "response.output_audio_transcript.done")["transcript"] == (
        "You said something 0.3 seconds long.")


def test_tools_named_choice_calls_that_function() -> None:
    session = session_with(WEATHER, TIME, choice={"type": "function", "name": "get_time"})
    say(session, "get_weather please")
    events = respond(session)
    assert called(events) == "get_time"
    assert only(events, "response.function_call_arguments.done")["arguments"] == "{}"


def test_tools_required_calls_the_first_function_tool() -> None:
    session = session_with(TIME, WEATHER, choice="required")
    say(session, "hello")
    assert called(respond(session)) == "get_time"


def test_tools_none_never_calls() -> None:
    session = session_with(WEATHER, choice="none")
    say(session, "get_weather")
    assert called(respond(session)) is None


def test_tools_response_create_overrides_tools_and_choice() -> None:
    session = session_with(WEATHER)
    say(session, "get_weather and get_time")
    assert called(respond(session, tools=[TIME])) == "get_time"
    say(session, "get_weather and get_time")
    assert called(respond(session, tool_choice="none")) is None
    say(session, "nothing")
    assert called(respond(session, tool_choice={"type": "function", "name": "get_weather"},
                          conversation="none")) == "get_weather"


def test_tools_output_then_response_says_the_tool_was_used() -> None:
    session = session_with(WEATHER)
    say(session, "get_weather for Paris")
    call_id = only(respond(session), "response.function_call_arguments.done")["call_id"]
    added = output(session, call_id, "Sunny, 21 C")
    assert kinds(added) == ["conversation.item.added", "conversation.item.done"]
    assert added[0]["item"]["type"] == "function_call_output"
    events = respond(session)
    assert called(events) is None
    transcript = only(events, "response.output_audio_transcript.done")["transcript"]
    assert transcript == "I used get_weather: Sunny, 21 C"
    assert any(e["type"] == "response.output_audio.delta" for e in events)
    assert only(events, "response.done")["response"]["output"][0]["content"] == [
        {"type": "output_audio", "transcript": transcript}]


def test_tools_output_then_text_response_says_it_in_text() -> None:
    session = session_with(WEATHER)
    say(session, "get_weather")
    call_id = only(respond(session), "response.function_call_arguments.done")["call_id"]
    output(session, call_id, '{"sky": "clear"}')
    events = respond(session, output_modalities=["text"])
    assert not any(e["type"].startswith("response.output_audio") for e in events)
    assert only(events, "response.output_text.done")["text"] == (
        'I used get_weather: {"sky": "clear"}')


def test_tools_forced_choice_calls_again_after_output() -> None:
    # As with the hosted model: a forced choice holds until the client changes it.
    session = session_with(WEATHER, choice="required")
    say(session, "hi")
    call_id = only(respond(session), "response.function_call_arguments.done")["call_id"]
    output(session, call_id, "done")
    assert called(respond(session)) == "get_weather"
    assert called(respond(session, tool_choice="auto")) is None


def test_tools_output_for_an_unknown_call_is_refused() -> None:
    session = session_with(WEATHER)
    [error] = send(session, {"type": "conversation.item.create", "event_id": "c9", "item": {
        "type": "function_call_output", "call_id": "call_nope", "output": "x"}})
    assert error["type"] == "error"
    assert error["error"] == {
        "type": "invalid_request_error", "code": "invalid_tool_call_id", "param": None,
        "message": "Tool call ID 'call_nope' not found in conversation.", "event_id": "c9"}
    assert len(session.conversation) == 0


@pytest.mark.parametrize("missing", ["call_id", "output"])
def test_tools_output_without_call_id_or_output_is_an_error(missing: str) -> None:
    session = session_with(WEATHER)
    item = {"type": "function_call_output", "call_id": "call_1", "output": "x"}
    del item[missing]
    [error] = send(session, {"type": "conversation.item.create", "item": item})
    assert error["type"] == "error"
    assert (error["error"]["code"], error["error"]["param"]) == (
        "missing_required_parameter", f"item.{missing}")
    assert len(session.conversation) == 0


def test_tools_inline_output_must_answer_a_known_call() -> None:
    session = session_with(WEATHER)
    inline = {"type": "function_call_output", "call_id": "call_nope", "output": "x"}
    [error] = send(session, {"type": "response.create", "response": {"input": [inline]}})
    assert error["error"]["code"] == "invalid_tool_call_id"
    call = {"type": "function_call", "call_id": "call_nope", "name": "get_weather",
            "arguments": "{}"}
    events = respond(session, input=[call, inline], conversation="none")
    assert only(events, "response.output_audio_transcript.done")["transcript"] == (
        "I used get_weather: x")


@pytest.mark.parametrize(("session_body", "param"), [
    ({"tool_choice": {"type": "function", "name": "nope"}}, "session.tool_choice"),
    ({"tool_choice": "always"}, "session.tool_choice"),
    ({"tools": {"name": "x"}}, "session.tools"),
    ({"tools": [{"type": "function"}]}, "session.tools[0].name"),
    ({"tools": [WEATHER, {"type": "function", "name": "f", "parameters": "x"}]},
     "session.tools[1].parameters"),
    ({"tools": [{"type": "web_search"}]}, "session.tools[0].type"),
    # This server was given no MCP URLs: the session may not make it fetch one.
    ({"tools": [MCP]}, "session.tools[0].server_url"),
    ({"tools": [WEATHER], "tool_choice": {"type": "mcp", "server_label": "docs"}},
     "session.tool_choice"),
])
def test_tools_session_update_refuses_unusable_tools(session_body: Event, param: str) -> None:
    session = LocalSession()
    [error] = send(session, {"type": "session.update",
                             "session": {"type": "realtime", **session_body}})
    assert error["type"] == "error" and error["error"]["param"] == param
    assert (session.config["tools"], session.config["tool_choice"]) == ([], "auto")


def test_tools_response_create_refuses_a_choice_of_no_tool() -> None:
    session = session_with(WEATHER)
    [error] = send(session, {"type": "response.create", "response": {
        "tools": [TIME], "tool_choice": {"type": "function", "name": "get_weather"}}})
    assert error["error"]["param"] == "response.tool_choice"
    assert not session.response_active


def test_tools_cancelled_call_ends_incomplete() -> None:
    session = session_with(WEATHER, choice="required")
    opened = send(session, {"type": "response.create"})
    events = opened + send(session, {"type": "response.cancel"})
    assert kinds(events) == [kind for kind in CALL_EVENTS
                             if kind != "response.function_call_arguments.delta"]
    assert only(events, "response.function_call_arguments.done")["arguments"] == ""
    final = only(events, "response.done")["response"]
    assert final["status"] == "cancelled" and final["output"][0]["status"] == "incomplete"
    assert session.next_response_chunk() is None


async def test_tools_agent_loop_over_a_websocket() -> None:
    async with LocalRealtimeServer(speed=50.0) as server, connect(server.url) as ws:
        await _recv_until(ws, "session.created")
        await _send(ws, {"type": "session.update", "session": {
            "type": "realtime", "tools": [WEATHER], "tool_choice": "auto"}})
        await _recv_until(ws, "session.updated")
        await _send(ws, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "please get_weather for Paris"}]}})
        await _send(ws, {"type": "response.create"})
        calling = await _recv_until(ws, "response.done")
        assert kinds(calling)[-len(CALL_EVENTS) + 1:] == CALL_EVENTS[:-1]
        item = only(calling, "response.output_item.done")["item"]
        assert item["status"] == "completed" and item["name"] == "get_weather"
        assert valid_arguments(WEATHER, item["arguments"])
        await _send(ws, {"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": item["call_id"],
            "output": "Sunny, 21 C"}})
        await _send(ws, {"type": "response.create"})
        answer = await _recv_until(ws, "response.done")
    assert "response.output_audio.delta" in kinds(answer)
    transcript = only(answer, "response.output_audio_transcript.done")["transcript"]
    assert "Sunny, 21 C" in transcript and "get_weather" in transcript
    assert only(answer, "response.done")["response"]["status"] == "completed"


async def _send(ws: ClientConnection, event: Event) -> None:
    await ws.send(json.dumps(event))


async def _recv_until(ws: ClientConnection, kind: str) -> list[Event]:
    """Events up to and including the first of type ``kind``; an error fails the test."""
    events: list[Event] = []
    while not events or events[-1]["type"] != kind:
        event = json.loads(await asyncio.wait_for(ws.recv(), 2.0))
        assert event["type"] != "error", event
        events.append(event)
    return conforming(events)
