"""The local server honours every session field it accepts, or refuses it naming the
parameter: ranges, unknown keys, ``idle_timeout_ms``, ``max_output_tokens``, ``speed``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from relay.upstream.local.local_session import LocalSession
from relay.upstream.local.response import IDLE_PROMPT

from .signals import chunks, silence, tone

Event = dict[str, Any]
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def append(session: LocalSession, pcm: bytes, ms: int = 40) -> list[Event]:
    events: list[Event] = []
    for piece in chunks(pcm, ms):
        audio = base64.b64encode(piece).decode()
        events += session.receive_event({"type": "input_audio_buffer.append", "audio": audio})
    return events


def drain(session: LocalSession) -> list[Event]:
    events: list[Event] = []
    while (chunk := session.next_response_chunk()) is not None:
        events += chunk.events
    return events


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def only(events: list[Event], kind: str) -> Event:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, types(events)
    return found[0]


def update(session: LocalSession, **fields: Any) -> list[Event]:
    return session.receive_event({"type": "session.update", "event_id": "evt_1",
                                  "session": {"type": "realtime", **fields}})


def conforms(events: list[Event]) -> None:
    for event in events:
        SERVER_EVENT.validate_python(event)


def refused(events: list[Event], param: str, code: str = "invalid_value") -> Event:
    [event] = events
    assert event["type"] == "error", event
    error = event["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code), error
    assert error["event_id"] == "evt_1"
    conforms(events)
    return dict(error)


# -- ranges and unknown keys ---------------------------------------------------------------

BAD_FIELDS = [
    ({"audio": {"output": {"speed": 2.0}}}, "session.audio.output.speed", "invalid_value"),
    ({"audio": {"output": {"speed": 0.2}}}, "session.audio.output.speed", "invalid_value"),
    ({"audio": {"output": {"speed": "fast"}}}, "session.audio.output.speed", "invalid_type"),
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}}},
     "session.audio.input.turn_detection.eagerness", "invalid_value"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 100}}}},
     "session.audio.input.turn_detection.idle_timeout_ms", "invalid_value"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad",
                                             "idle_timeout_ms": 60_000}}}},
     "session.audio.input.turn_detection.idle_timeout_ms", "invalid_value"),
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad",
                                             "idle_timeout_ms": 6000}}}},
     "session.audio.input.turn_detection.idle_timeout_ms", "invalid_value"),
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}}},
     "session.audio.input.turn_detection.threshold", "unknown_parameter"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "eagerness": "low"}}}},
     "session.audio.input.turn_detection.eagerness", "unknown_parameter"),
    ({"audio": {"input": {"noise_reduction": {"type": "studio"}}}},
     "session.audio.input.noise_reduction.type", "invalid_value"),
    ({"audio": {"input": {"noise_reduction": {"type": "near_field", "strength": -1}}}},
     "session.audio.input.noise_reduction.strength", "invalid_value"),
    ({"audio": {"input": {"noise_reduction": {"type": "far_field", "level": 3}}}},
     "session.audio.input.noise_reduction.level", "unknown_parameter"),
    ({"include": ["item.output_audio.logprobs"]}, "session.include[0]", "invalid_value"),
    ({"include": "everything"}, "session.include", "invalid_type"),
    ({"max_output_tokens": 0}, "session.max_output_tokens", "invalid_value"),
    ({"max_output_tokens": 4097}, "session.max_output_tokens", "invalid_value"),
    ({"max_output_tokens": "lots"}, "session.max_output_tokens", "invalid_value"),
    ({"truncation": "sometimes"}, "session.truncation", "invalid_value"),
    ({"truncation": {"type": "retention_ratio", "retention_ratio": 1.5}},
     "session.truncation.retention_ratio", "invalid_value"),
    ({"truncation": {"type": "retention_ratio", "retention_ratio": 0.5,
                     "token_limits": {"post_instructions": -3}}},
     "session.truncation.token_limits.post_instructions", "invalid_value"),
    ({"tracing": {"workflow": "x"}}, "session.tracing.workflow", "unknown_parameter"),
    ({"prompt": {"id": "pmpt_1"}}, "session.prompt", "unsupported_parameter"),
    ({"reasoning": {"effort": "low"}}, "session.reasoning", "unsupported_parameter"),
    ({"temperature": 0.8}, "session.temperature", "unknown_parameter"),
    ({"audio": {"output": {"pitch": 2}}}, "session.audio.output.pitch", "unknown_parameter"),
    ({"audio": {"input": {"gain": 2}}}, "session.audio.input.gain", "unknown_parameter"),
    ({"audio": {"video": {}}}, "session.audio.video", "unknown_parameter"),
]


@pytest.mark.parametrize(("fields", "param", "code"), BAD_FIELDS,
                         ids=[case[1] + ":" + case[2] for case in BAD_FIELDS])
def test_field_checks_out_of_range_are_refused_naming_the_parameter(
        fields: dict[str, Any], param: str, code: str) -> None:
    session = LocalSession()
    before = json.dumps(session.config, sort_keys=True)
    refused(update(session, **fields), param, code)
    assert json.dumps(session.config, sort_keys=True) == before  # the session is unchanged


GOOD_FIELDS: list[dict[str, Any]] = [
    {"audio": {"output": {"speed": 0.25}}},
    {"audio": {"output": {"speed": 1.5}}},
    {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}},
    {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "model_version": "v2"}}}},
    {"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}},
    {"audio": {"input": {"noise_reduction": {"type": "far_field", "strength": 0.5}}}},
    {"audio": {"input": {"noise_reduction": None}}},
    {"include": []},
    {"include": ["item.input_audio_transcription.logprobs"]},
    {"max_output_tokens": 4096},
    {"max_output_tokens": "inf"},
    {"truncation": "disabled"},
    {"truncation": {"type": "retention_ratio", "retention_ratio": 0.8,
                    "token_limits": {"post_instructions": 1000}}},
    {"tracing": "auto"},
    {"tracing": {"workflow_name": "support", "group_id": "g1", "metadata": {"a": 1}}},
    {"parallel_tool_calls": False},
]


@pytest.mark.parametrize("fields", GOOD_FIELDS, ids=lambda f: json.dumps(f)[:60])
def test_field_checks_in_range_are_taken_and_echoed(fields: dict[str, Any]) -> None:
    session = LocalSession()
    [updated] = update(session, **fields)
    assert updated["type"] == "session.updated", updated
    conforms([updated])
    for key, value in fields.items():
        if key != "audio":
            assert updated["session"][key] == value


def test_field_checks_response_create_refuses_unknown_keys_and_bad_budgets() -> None:
    session = LocalSession()
    for response, param, code in [
        ({"temperature": 0.2}, "response.temperature", "unknown_parameter"),
        ({"max_output_tokens": 0}, "response.max_output_tokens", "invalid_value"),
        ({"audio": {"output": {"speed": 1.2}}}, "response.audio.output.speed",
         "unknown_parameter"),
        ({"prompt": {"id": "pmpt_1"}}, "response.prompt", "unsupported_parameter"),
    ]:
        events = session.receive_event({"type": "response.create", "event_id": "evt_1",
                                        "response": response})
        refused(events, param, code)
        assert not session.response_active


# -- idle_timeout_ms -------------------------------------------------------------------------

def idle_session(timeout_ms: int = 5000) -> LocalSession:
    session = LocalSession(mode="parrot")
    [updated] = session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": {
            "type": "server_vad", "idle_timeout_ms": timeout_ms}}}}})
    assert updated["type"] == "session.updated"
    return session


def test_field_checks_idle_timeout_triggers_after_silence_and_starts_a_response() -> None:
    session = idle_session(5000)
    assert append(session, silence(4900)) == []
    events = append(session, silence(200))
    conforms(events)
    assert types(events)[:5] == [
        "input_audio_buffer.timeout_triggered", "input_audio_buffer.committed",
        "conversation.item.added", "conversation.item.done", "response.created"]
    timeout = events[0]
    assert timeout["audio_start_ms"] == 0
    assert 5000 <= timeout["audio_end_ms"] <= 5100
    assert only(events, "input_audio_buffer.committed")["item_id"] == timeout["item_id"]
    done = drain(session)
    conforms(done)
    assert only(done, "response.output_audio_transcript.done")["transcript"] == IDLE_PROMPT
    assert only(done, "response.done")["response"]["status"] == "completed"


def test_field_checks_idle_timeout_waits_for_the_reply_to_play_out_and_rearms() -> None:
    session = idle_session(5000)
    append(session, silence(5040))
    reply = drain(session)
    reply_ms = sum(len(base64.b64decode(e["delta"])) for e in reply
                   if e["type"] == "response.output_audio.delta") // 48
    assert reply_ms > 0
    # The idle clock starts once the reply has played out, on the input clock.
    quiet = append(session, silence(5000 + reply_ms - 100))
    assert "input_audio_buffer.timeout_triggered" not in types(quiet)
    again = append(session, silence(200))
    assert types(again)[0] == "input_audio_buffer.timeout_triggered"
    assert again[0]["audio_start_ms"] >= 5040


def test_field_checks_idle_timeout_is_reset_by_speech() -> None:
    session = idle_session(5000)
    events = append(session, silence(3000) + tone(600) + silence(700))
    assert "input_audio_buffer.speech_stopped" in types(events)
    drain(session)  # the parrot answers the turn
    events = append(session, silence(4000))
    assert "input_audio_buffer.timeout_triggered" not in types(events)


def test_field_checks_idle_timeout_off_by_default() -> None:
    session = LocalSession(mode="parrot")
    assert append(session, silence(31_000)) == []


# -- max_output_tokens -----------------------------------------------------------------------

def test_field_checks_max_output_tokens_ends_an_audio_reply_incomplete() -> None:
    session = LocalSession(mode="parrot")
    session.receive_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{
            "type": "input_audio", "audio": base64.b64encode(tone(2000)).decode()}]}})
    events = session.receive_event({"type": "response.create",
                                    "response": {"max_output_tokens": 10}})
    events += drain(session)
    conforms(events)
    done = only(events, "response.done")["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["output"][0]["status"] == "incomplete"
    assert 0 < done["usage"]["output_tokens"] <= 10
    audio = sum(len(base64.b64decode(e["delta"])) for e in events
                if e["type"] == "response.output_audio.delta")
    assert 0 < audio < 2000 * 48  # cut well short of the 2 s the parrot would say


def test_field_checks_max_output_tokens_cuts_a_text_reply_at_a_word() -> None:
    session = LocalSession(mode="parrot")
    update(session, output_modalities=["text"], max_output_tokens=3)
    events = session.receive_event({"type": "response.create"}) + drain(session)
    conforms(events)
    text = only(events, "response.output_text.done")["text"]
    assert len(text.split()) == 3
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") \
        == text
    done = only(events, "response.done")["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("incomplete",
                                                                   "max_output_tokens")


def test_field_checks_max_output_tokens_large_enough_completes() -> None:
    session = LocalSession(mode="parrot")
    update(session, output_modalities=["text"], max_output_tokens=4096)
    events = session.receive_event({"type": "response.create"}) + drain(session)
    assert only(events, "response.done")["response"]["status"] == "completed"


def test_field_checks_max_output_tokens_cuts_function_call_arguments() -> None:
    session = LocalSession(mode="parrot")
    tool = {"type": "function", "name": "lookup", "parameters": {
        "type": "object", "required": ["query"],
        "properties": {"query": {"type": "string", "default": "x" * 200}}}}
    update(session, tools=[tool], tool_choice="required", max_output_tokens=5)
    events = session.receive_event({"type": "response.create"}) + drain(session)
    conforms(events)
    arguments = only(events, "response.function_call_arguments.done")["arguments"]
    assert len(arguments) == 20
    assert only(events, "response.done")["response"]["status"] == "incomplete"


# -- speed -----------------------------------------------------------------------------------

@pytest.mark.parametrize("speed", [0.5, 1.5])
def test_field_checks_speed_changes_the_parrots_reply_length(speed: float) -> None:
    session = LocalSession(mode="parrot")
    update(session, audio={"output": {"speed": speed}})
    session.receive_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{
            "type": "input_audio", "audio": base64.b64encode(tone(1200)).decode()}]}})
    events = session.receive_event({"type": "response.create"}) + drain(session)
    audio_ms = sum(len(base64.b64decode(e["delta"])) for e in events
                   if e["type"] == "response.output_audio.delta") // 48
    assert abs(audio_ms - 1200 / speed) <= 2


# -- truncation ------------------------------------------------------------------------------

def say_text(session: LocalSession, text: str) -> None:
    session.receive_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def test_field_checks_truncation_retention_ratio_drops_the_oldest_from_the_context() -> None:
    session = LocalSession(mode="parrot")
    update(session, output_modalities=["text"])
    for _ in range(10):
        say_text(session, "x" * 400)  # 100 tokens each
    full = only(session.receive_event({"type": "response.create"}) + drain(session),
                "response.done")["response"]["usage"]
    assert full["input_tokens"] >= 1000
    update(session, truncation={"type": "retention_ratio", "retention_ratio": 0.5,
                                "token_limits": {"post_instructions": 600}})
    cut = only(session.receive_event({"type": "response.create"}) + drain(session),
               "response.done")["response"]
    conforms([{"type": "response.done", "event_id": "e", "response": cut}])
    assert cut["status"] == "completed"
    assert 200 <= cut["usage"]["input_tokens"] <= 300  # at most half of 600 kept
    assert cut["usage"]["input_token_details"]["text_tokens"] == cut["usage"]["input_tokens"]
    assert len(session.conversation) >= 11  # the conversation itself keeps every item


def test_field_checks_truncation_disabled_fails_a_response_that_does_not_fit() -> None:
    session = LocalSession(mode="parrot")
    update(session, output_modalities=["text"], truncation="disabled")
    say_text(session, "y" * 4 * 30_000)  # 30k tokens: more than 32k minus 4k reserved
    events = session.receive_event({"type": "response.create"}) + drain(session)
    conforms(events)
    done = only(events, "response.done")["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "context_length_exceeded"
    assert not session.response_active
    update(session, truncation="auto")  # the same conversation, cut: the response goes on
    events = session.receive_event({"type": "response.create"}) + drain(session)
    assert only(events, "response.done")["response"]["status"] == "completed"
