"""The primary Live WebSocket's core, without I/O: what a client of
``client.live.connect()`` may send, how its ``session.start`` is checked, sealed and locked
before the upstream sees it, and what it gets back. Every event for the client validates
against ``openai.types.live.ServerEvent``, every command sent upstream against
``ClientEvent``."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.live import ClientEvent, ServerEvent

from relay.errors import InvalidRequest, RelayError
from relay.protocol.flood import MessageLimits
from relay.protocol.live.live_config import seal, sealed_live_config
from relay.protocol.live.primary_core import STARTED, LiveWebSocketCore
from relay.protocol.redact import Redactor

SERVER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
CLIENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ClientEvent)
UNSET = object()
SECRET = "sk-upstream-secret-0123456789"


def core(**kwargs: Any) -> LiveWebSocketCore:
    return LiveWebSocketCore("live_relayid", clock=lambda: 0.0, unset=UNSET, **kwargs)


def send(live: LiveWebSocketCore, event: dict[str, Any]) -> None:
    live.client_message(json.dumps(event))


def to_client(live: LiveWebSocketCore) -> list[dict[str, Any]]:
    events = live.drain_client()
    for event in events:
        SERVER.validate_python(event)
    return events


def upstream(live: LiveWebSocketCore) -> list[dict[str, Any]]:
    events = live.drain_upstream()
    for event in events:
        CLIENT.validate_python(event)
    return events


def started(upstream_id: str = "live_upstream", **session: Any) -> str:
    return json.dumps({"type": "session.started", "event_id": "event_1",
                       "client_event_id": "s1", "session": {
                           "id": upstream_id, "expires_at": 2, "model": "gpt-live-1",
                           "status": "active", **session}})


def test_primary_core_passes_a_checked_start_and_gives_the_relay_id() -> None:
    live = core()
    live.start()
    assert live.drain_upstream() == []  # a Live client speaks first
    send(live, {"type": "session.start", "event_id": "s1", "session": {
        "model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 16000}}}})
    [start] = upstream(live)
    assert start["session"]["audio"]["format"]["rate"] == 16000  # the client's own format
    assert start["event_id"] == "s1" and live.model == "gpt-live-1"
    # Commands sent before session.started go on after the start (the SDK queues them).
    send(live, {"type": "session.input_audio.append", "audio": "AAAA"})
    assert [e["type"] for e in upstream(live)] == ["session.input_audio.append"]
    live.upstream_message(started(audio={"format": {"type": "audio/pcm", "rate": 16000}}))
    [event] = to_client(live)
    assert event["session"]["id"] == "live_relayid"
    assert event["session"]["audio"]["format"]["rate"] == 16000  # kept on a WebSocket
    assert live.upstream_session_id == "live_upstream" and live.state == STARTED


def test_primary_core_refuses_commands_before_start_and_a_second_start() -> None:
    live = core()
    send(live, {"type": "session.input_audio.append", "event_id": "a1", "audio": "AAAA"})
    send(live, {"type": "transport.dtmf.send", "event_id": "d1", "event": "1"})
    send(live, {"type": "session.bogus", "event_id": "b1"})
    assert live.drain_upstream() == []
    errors = to_client(live)
    assert [(e["error"]["code"], e["client_event_id"]) for e in errors] == [
        ("session_not_started", "a1"), ("invalid_value", "d1"), ("invalid_value", "b1")]
    assert "primary WebSocket" in errors[1]["error"]["message"]
    assert "Unknown Live client event type" in errors[2]["error"]["message"]
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    send(live, {"type": "session.start", "event_id": "s2",
                "session": {"model": "gpt-live-1"}})
    assert [e["type"] for e in upstream(live)] == ["session.start"]
    [again] = to_client(live)
    assert again["error"]["code"] == "session_already_started"


@pytest.mark.parametrize(("session", "code", "param"), [
    ({"model": "gpt-live-1", "idle_timeout_s": 30}, "unknown_parameter",
     "session.idle_timeout_s"),
    ({"model": "gpt-live-1", "voice": "marin"}, "unknown_parameter", "session.voice"),
    ({"instructions": "No model."}, "missing_required_parameter", "session.model"),
    ("not an object", "invalid_type", "session"),
    ({"model": "gpt-live-1", "delegation": {"type": "responses", "responses": {}}},
     "delegation_unsupported", "session.delegation.type"),
])
def test_primary_core_refuses_a_bad_start_and_takes_a_better_one(
        session: Any, code: str, param: str) -> None:
    live = core(offline=True)
    send(live, {"type": "session.start", "event_id": "s1", "session": session})
    assert live.drain_upstream() == []
    [error] = to_client(live)
    assert (error["error"]["code"], error["error"]["param"]) == (code, param)
    assert error["client_event_id"] == "s1"
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    assert [e["type"] for e in upstream(live)] == ["session.start"]


def test_primary_core_an_upstream_refusal_of_the_start_lets_the_client_retry() -> None:
    live = core()
    send(live, {"type": "session.start", "event_id": "s1", "session": {"model": "gpt-live-9"}})
    send(live, {"type": "session.input_audio.mute", "event_id": "m1"})
    upstream(live)
    # An error about another command does not undo the start.
    body = {"type": "invalid_request_error", "code": "session_not_started",
            "message": "No.", "client_event_id": "m1"}
    live.upstream_message(json.dumps({"type": "error", "event_id": "e0",
                                      "client_event_id": "m1", "error": body}))
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    assert live.drain_upstream() == []
    to_client(live)
    live.upstream_message(json.dumps({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "model_not_found", "message": "No."}}))
    assert to_client(live)[0]["error"]["code"] == "model_not_found"
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    assert [e["type"] for e in upstream(live)] == ["session.start"]


def test_primary_core_a_sealed_key_fills_in_and_locks_its_fields() -> None:
    sealed = sealed_live_config({"type": "live", "model": "gpt-live-1",
                                 "instructions": "Sealed.", "idle_timeout_s": 30,
                                 "audio": {"output": {"voice": "cedar"}}})
    live = core(sealed=sealed)
    send(live, {"type": "session.start", "event_id": "s1", "session": {
        "model": "gpt-live-1", "audio": {"output": {"voice": "marin"}}}})
    [error] = to_client(live)
    assert error["error"]["code"] == "locked_field"
    assert error["error"]["param"] == "session.audio.output.voice"
    assert live.drain_upstream() == []
    # Repeating a sealed value is fine; what the key left out is the client's.
    send(live, {"type": "session.start", "session": {
        "model": "gpt-live-1", "instructions": "Sealed.",
        "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}})
    [start] = upstream(live)
    assert start["session"]["audio"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                         "output": {"voice": "cedar"}}
    assert "idle_timeout_s" not in start["session"]  # a WebRTC-only field of the key


def test_primary_core_a_realtime_key_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        sealed_live_config({"type": "realtime", "instructions": "x"})
    assert info.value.code == "invalid_client_secret"
    assert sealed_live_config(None) is None


def test_primary_core_seal_merges_nested_fields() -> None:
    merged = seal({"audio": {"format": {"type": "audio/pcm"}}},
                  {"audio": {"output": {"voice": "cedar"}}, "model": "gpt-live-1"})
    assert merged == {"audio": {"format": {"type": "audio/pcm"},
                                "output": {"voice": "cedar"}}, "model": "gpt-live-1"}
    with pytest.raises(InvalidRequest) as info:
        seal({"model": "gpt-live-1.1"}, {"model": "gpt-live-1"})
    assert info.value.param == "session.model"


def test_primary_core_applies_the_operators_locks() -> None:
    live = core(policy={"instructions": "Operator's rules.", "audio.output.voice": UNSET})
    send(live, {"type": "session.start", "session": {
        "model": "gpt-live-1", "audio": {"output": {"voice": "marin"}}}})
    [error] = to_client(live)
    assert error["error"]["code"] == "locked_field"
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    [start] = upstream(live)
    assert start["session"]["instructions"] == "Operator's rules."


def test_primary_core_session_update_changes_only_what_may_change() -> None:
    live = core()
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1",
                                                     "instructions": "Mine."}})
    live.upstream_message(started())
    upstream(live)
    to_client(live)
    send(live, {"type": "session.update", "event_id": "u1",
                "session": {"instructions": "Other."}})
    send(live, {"type": "session.update", "event_id": "u2",
                "session": {"delegation": {"type": "responses", "responses": {}}}})
    assert live.drain_upstream() == []
    codes = [e["error"]["code"] for e in to_client(live)]
    assert codes == ["immutable_parameter", "invalid_value"]
    send(live, {"type": "session.update", "session": {"triggers": []}})
    assert [e["type"] for e in upstream(live)] == ["session.update"]


def test_primary_core_passes_audio_and_transcripts_and_masks_secrets() -> None:
    live = core(redact=Redactor([SECRET]))
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    live.upstream_message(started())
    for event in ({"type": "session.output_audio.delta", "event_id": "e2", "delta": "AAAA"},
                  {"type": "session.output_transcript.delta", "event_id": "e3",
                   "delta": f"key {SECRET}", "start_ms": 0, "end_ms": 10}):
        live.upstream_message(json.dumps(event))
    events = to_client(live)
    assert [e["type"] for e in events] == ["session.started", "session.output_audio.delta",
                                           "session.output_transcript.delta"]
    assert SECRET not in json.dumps(events)


def test_primary_core_closing_cleanly_is_not_an_error() -> None:
    live = core()
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1"}})
    live.upstream_message(started())
    live.upstream_message(json.dumps({
        "type": "session.closed", "event_id": "e9", "reason": "close_requested",
        "session": {"id": "live_upstream", "expires_at": 2, "model": "gpt-live-1",
                    "status": "active"}, "usage": {"seconds": 1}}))
    live.upstream_closed(1000, "")
    events = to_client(live)
    assert [e["type"] for e in events] == ["session.started", "session.closed"]
    assert events[-1]["session"]["id"] == "live_relayid"
    other = core()
    other.upstream_closed(1011, f"boom {SECRET}")
    [error] = to_client(other)
    assert error["error"]["code"] == "upstream_closed"


def test_primary_core_a_flood_ends_the_session_and_an_oversized_message_is_refused() -> None:
    live = core(limits=MessageLimits(max_bytes=100, per_second=2.0, flood_drops=20))
    send(live, {"type": "session.start", "session": {"model": "gpt-live-1",
                                                     "instructions": "x" * 200}})
    assert to_client(live)[0]["error"]["code"] == "message_too_large"
    for _ in range(50):
        send(live, {"type": "session.close"})
    assert live.end_reason == "client flooded the session"
    live.relay_error(RelayError("Shutting down.", code="server_shutting_down"))
    assert to_client(live)[-1]["error"]["code"] == "server_shutting_down"
