"""The GPT-Live protocol core, without I/O: what goes upstream, to the data channel and to
sidebands; every event a client or sideband receives validates against
``openai.types.live`` (``ServerEvent`` / ``ConnectServerEvent``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
from openai.types.live import ClientEvent, ServerEvent
from openai.types.live.connect_server_event import ConnectServerEvent

from relay.errors import RelayError
from relay.protocol.flood import MessageLimits
from relay.protocol.live.live_core import LiveCore
from relay.protocol.redact import Redactor

SERVER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
SIDEBAND: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ConnectServerEvent)
CLIENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ClientEvent)
SECRET = "sk-upstream-secret-0123456789"


def core(session: dict[str, Any] | None = None, **kwargs: Any) -> LiveCore:
    live = LiveCore("rtc_u1_relayid", session or {"model": "gpt-live-1"},
                    max_playout_samples=24000 * 5, clock=lambda: 0.0, **kwargs)
    live.start()
    live.channel_opened(0)
    return live


def started(upstream_id: str = "live_upstream") -> str:
    return json.dumps({"type": "session.started", "event_id": "event_1", "session": {
        "id": upstream_id, "expires_at": 2, "model": "gpt-live-1", "status": "active",
        "audio": {"format": {"type": "audio/pcm", "rate": 24000},
                  "output": {"voice": "marin"}}}})


def to_client(live: LiveCore) -> list[dict[str, Any]]:
    events = [json.loads(m) for m in live.drain_client_messages()]
    for event in events:
        SERVER.validate_python(event)
    return events


def to_sideband(live: LiveCore, name: str) -> list[dict[str, Any]]:
    events = live.drain_sideband(name)
    for event in events:
        SIDEBAND.validate_python(event)
    return events


def test_live_core_starts_the_upstream_session_in_the_websocket_form() -> None:
    live = core({"model": "gpt-live-1", "instructions": "Hi.", "wake_policy": {"type": "speech"},
                 "client": {"data_channel": {"allowed_client_events": "all"}}})
    [start] = live.drain_upstream()
    CLIENT.validate_python(start)
    assert start == {"type": "session.start", "session": {
        "model": "gpt-live-1", "instructions": "Hi.",
        "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}}


def test_live_core_session_started_names_the_relays_session() -> None:
    live = core()
    live.upstream_message(started())
    [event] = to_client(live)
    assert event["session"]["id"] == "rtc_u1_relayid"
    assert "format" not in event["session"]["audio"]
    assert live.upstream_session_id == "live_upstream"


def test_live_core_output_audio_goes_to_the_track_and_sidebands_only() -> None:
    live = core()
    live.attach_sideband("sb")
    live.uplink_audio(bytes(48 * 500))  # half a second of microphone: the timeline
    pcm = b"\x10\x00" * 2400  # 100 ms
    live.upstream_message(json.dumps({"type": "session.output_audio.delta",
                                      "delta": base64.b64encode(pcm).decode()}))
    assert to_client(live) == []
    reflected = to_sideband(live, "sb")
    assert reflected[0]["type"] == "session.input_audio.append"
    assert reflected[-1] == {"type": "session.output_audio.delta",
                             "delta": base64.b64encode(pcm).decode(),
                             "start_ms": 500, "end_ms": 600}
    frames = [live.next_frame() for _ in range(6)]
    assert frames[0][:2] == b"\x10\x00" and frames[5] == bytes(960)
    assert live.stats.audio_frames_out == 5


def test_live_core_client_commands_follow_the_data_channel_permissions() -> None:
    live = core({"model": "gpt-live-1", "client": {"data_channel": {
        "allowed_client_events": ["session.input_audio.mute"],
        "allowed_server_events": [{"type": "session.output_transcript.delta"}]}}})
    live.drain_upstream()
    live.client_message(json.dumps({"type": "session.input_audio.mute", "event_id": "m"}))
    live.client_message(json.dumps({"type": "session.commentary.append", "event_id": "c",
                                    "content": "x", "delegation_id": None}))
    assert [e["type"] for e in live.drain_upstream()] == ["session.input_audio.mute"]
    live.upstream_message(json.dumps({"type": "session.input_audio.muted", "event_id": "e"}))
    live.upstream_message(json.dumps({"type": "session.output_transcript.delta",
                                      "event_id": "e2", "delta": "hi", "start_ms": 0,
                                      "end_ms": 5}))
    events = to_client(live)
    # The refused command's error (always delivered), then only the permitted event.
    assert [e["type"] for e in events] == ["error", "session.output_transcript.delta"]
    assert events[0]["error"]["code"] == "event_not_allowed"
    assert events[0]["client_event_id"] == "c"


def test_live_core_refuses_audio_and_start_on_the_data_channel() -> None:
    live = core()
    live.drain_upstream()
    live.client_message(json.dumps({"type": "session.input_audio.append", "audio": ""}))
    live.client_message(json.dumps({"type": "session.start", "session": {}}))
    live.client_message(json.dumps({"type": "transport.dtmf.send", "event": "1"}))
    assert live.drain_upstream() == []
    codes = [e["error"]["code"] for e in to_client(live)]
    assert codes == ["invalid_value", "session_already_started", "invalid_value"]


def test_live_core_an_upstream_error_goes_back_to_the_sideband_that_caused_it() -> None:
    live = core()
    live.attach_sideband("sb")
    live.client_message(json.dumps({"type": "session.commentary.append", "event_id": "s1",
                                    "content": "x", "delegation_id": "del_nope"}), "sb")
    assert live.drain_upstream()[-1]["event_id"] == "s1"
    live.upstream_message(json.dumps({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "delegation_not_found", "message": "no",
        "client_event_id": "s1"}}))
    assert to_client(live) == []
    [error] = to_sideband(live, "sb")
    assert error["error"]["code"] == "delegation_not_found"


def test_live_core_masks_the_upstream_key_in_what_the_upstream_says() -> None:
    live = core(redact=Redactor([SECRET]))
    live.upstream_message(json.dumps({"type": "info", "event_id": "e", "code": "x",
                                      "message": f"key {SECRET}"}))
    [info] = to_client(live)
    assert SECRET not in json.dumps(info)


def test_live_core_upstream_close_after_session_closed_is_quiet() -> None:
    live = core()
    live.upstream_message(started())
    live.upstream_message(json.dumps({
        "type": "session.closed", "event_id": "e", "reason": "close_requested",
        "usage": {"seconds": 1},
        "session": {"id": "live_upstream", "expires_at": 2, "model": "gpt-live-1",
                    "status": "active"}}))
    live.upstream_closed(1000, "")
    events = to_client(live)
    assert [e["type"] for e in events] == ["session.started", "session.closed"]
    assert events[-1]["session"]["id"] == "rtc_u1_relayid"
    other = core()
    other.upstream_closed(1011, "boom")
    [error] = to_client(other)
    assert error["error"]["code"] == "upstream_closed"


def test_live_core_a_flooding_client_ends_the_session() -> None:
    live = core(client_limits=MessageLimits(1024, 10.0, flood_drops=50))
    for _ in range(100):
        live.client_message(json.dumps({"type": "session.input_audio.mute"}))
    assert live.end_reason == "client flooded the session"
    assert len(live.drain_upstream()) == 1 + 10  # session.start, then a second's worth


def test_live_core_hang_up_says_session_closed_once() -> None:
    live = core()
    live.attach_sideband("sb")
    live.upstream_message(started())
    live.uplink_audio(bytes(48 * 2500))
    live.hang_up()
    live.hang_up()
    live.upstream_message(json.dumps({
        "type": "session.closed", "event_id": "e", "reason": "connection_lost",
        "usage": {"seconds": 2},
        "session": {"id": "live_upstream", "expires_at": 2, "model": "gpt-live-1",
                    "status": "active"}}))
    closed = [e for e in to_client(live) if e["type"] == "session.closed"]
    assert len(closed) == 1 and closed[0]["reason"] == "close_requested"
    assert closed[0]["session"]["id"] == "rtc_u1_relayid"
    assert closed[0]["usage"] == {"seconds": 2}
    assert [e["type"] for e in to_sideband(live, "sb")][-1] == "session.closed"


def test_live_core_tells_a_restricted_frontend_its_permissions() -> None:
    live = core({"model": "gpt-live-1", "client": {"data_channel": {
        "allowed_client_events": ["session.input_audio.mute"],
        "allowed_server_events": [{"type": "session.started"}, {"type": "info"}]}}})
    live.upstream_message(started())
    _, info = to_client(live)
    assert info["code"] == "data_channel_permissions"
    assert "session.input_audio.mute" in info["message"]
    everything = core()
    everything.upstream_message(started())
    assert [e["type"] for e in to_client(everything)] == ["session.started"]


def test_live_core_relay_errors_take_the_live_shape() -> None:
    live = core()
    live.attach_sideband("sb")
    live.relay_error(RelayError("The relay is shutting down.", code="server_shutting_down"))
    [to_frontend] = to_client(live)
    [to_server] = to_sideband(live, "sb")
    assert to_frontend["error"]["code"] == to_server["error"]["code"] == "server_shutting_down"
    assert "event_id" not in to_frontend["error"]  # Live names commands by client_event_id


def test_live_core_counts_each_error_sent_once() -> None:
    live = core()
    live.attach_sideband("guard")
    live.client_message(json.dumps({"type": "session.start", "session": {}}))
    live.client_message(json.dumps({"type": "no.such.event"}), source="guard")
    [refused] = to_client(live)
    [unknown] = to_sideband(live, "guard")
    assert refused["error"]["code"] == "session_already_started"
    assert unknown["error"]["code"] == "invalid_value"
    assert live.measures.errors == {"session_already_started": 1, "invalid_value": 1}


def test_live_core_relay_notice_goes_as_an_info_after_session_started() -> None:
    """The relay's own notice (a recorded call's ``relay.recording.started``) reaches a
    GPT-Live client as the ``info`` event its types know, after ``session.started``."""
    live = core()
    recording = {"audio": True, "events": True,
                 "content_url": "/v1/live/sessions/rtc_u1_relayid/content"}
    live.notify_client({"type": "relay.recording.started", "event_id": "event_relay1",
                        "call_id": "rtc_u1_relayid", "recording": recording})
    assert to_client(live) == []  # held for after the greeting
    live.upstream_message(started())
    greeting, info = to_client(live)
    assert greeting["type"] == "session.started"
    assert info["type"] == "info" and info["code"] == "recording_started"
    assert "recorded" in info["message"]
    assert info["recording"] == recording and info["call_id"] == "rtc_u1_relayid"
