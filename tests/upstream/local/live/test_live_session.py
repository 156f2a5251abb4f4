"""The embedded server's GPT-Live session, without I/O: every event it says validates
against ``openai.types.live.ServerEvent`` (the conformance oracle)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
import pytest
from openai.types.live import ServerEvent

from relay.upstream.local.assistant import Synthesize, Transcribe
from relay.upstream.local.live import LiveLocalSession

ORACLE: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
BYTES_PER_MS = 48
SILENCE_MS = 1500


def checked(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        ORACLE.validate_python(event)
    return events


def started(delegation: dict[str, Any] | None = None) -> LiveLocalSession:
    session = LiveLocalSession(mode="assistant", now=lambda: 1_000_000.0)
    config: dict[str, Any] = {"model": "gpt-live-1"}
    if delegation is not None:
        config["delegation"] = delegation
    [event] = checked(session.receive_event({"type": "session.start", "session": config}))
    assert event["type"] == "session.started"
    return session


def append(session: LiveLocalSession, pcm: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(0, len(pcm), 960):
        events += session.receive_event({"type": "session.input_audio.append",
                                         "audio": base64.b64encode(pcm[i:i + 960]).decode()})
    return checked(events)


def chunks(session: LiveLocalSession, limit: int = 10_000) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while limit and (chunk := session.next_response_chunk()) is not None:
        events += chunk.events
        limit -= 1
    return checked(events)


def hear_turn(session: LiveLocalSession, speech: bytes) -> Transcribe:
    append(session, speech + bytes(SILENCE_MS * BYTES_PER_MS))
    [job] = session.take_jobs()
    assert isinstance(job, Transcribe)
    return job


def test_live_session_starts_with_session_started_naming_the_command() -> None:
    session = LiveLocalSession(now=lambda: 1_000_000.0)
    [event] = checked(session.receive_message(json.dumps({
        "type": "session.start", "event_id": "evt_1",
        "session": {"model": "gpt-live-1", "instructions": "Be brief."}})))
    assert event["client_event_id"] == "evt_1"
    resource = event["session"]
    assert resource["id"].startswith("live_") and resource["status"] == "active"
    assert resource["expires_at"] == 1_000_000 + 3600
    assert resource["instructions"] == "Be brief."
    assert resource["audio"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                 "output": {"voice": "marin"}}


def test_live_session_refuses_commands_before_start() -> None:
    session = LiveLocalSession()
    [error] = checked(session.receive_event({"type": "session.input_audio.append",
                                             "audio": "", "event_id": "a1"}))
    assert error["error"]["code"] == "session_not_started"
    assert error["client_event_id"] == error["error"]["client_event_id"] == "a1"


@pytest.mark.parametrize(("config", "code", "param"), [
    ({"model": "gpt-live-1", "voice": "marin"}, "unknown_parameter", "session.voice"),
    ({"instructions": "x"}, "missing_required_parameter", "session.model"),
    ({"model": "gpt-live-1", "delegation": {"type": "responses",
                                            "responses": {"model": "gpt-5.5"}}},
     "delegation_unsupported", "session.delegation.type"),
    ({"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 16000}}},
     "unsupported_audio_format", "session.audio.format"),
])
def test_live_session_refuses_a_configuration_it_cannot_serve(
        config: dict[str, Any], code: str, param: str) -> None:
    session = LiveLocalSession()
    [error] = checked(session.receive_event({"type": "session.start", "session": config}))
    assert (error["error"]["code"], error["error"]["param"]) == (code, param)
    assert session.config is None  # still waiting for a session.start it can serve


def test_live_session_refuses_backend_commands_offline() -> None:
    session = started()
    for kind in ("response.create", "decision.create"):
        [error] = checked(session.receive_event({"type": kind}))
        assert error["error"]["code"] == "delegation_unsupported"
    [error] = checked(session.receive_event({"type": "session.start",
                                             "session": {"model": "gpt-live-1"}}))
    assert error["error"]["code"] == "session_already_started"


def test_live_session_turn_is_transcribed_and_answered_on_the_timeline(speech: bytes) -> None:
    session = started()
    job = hear_turn(session, speech)
    heard = checked(session.transcription_done(job, "hello there"))
    assert "".join(e["delta"] for e in heard) == "hello there"
    assert all(e["type"] == "session.input_transcript.delta" for e in heard)
    spoken_ms = len(speech) // BYTES_PER_MS
    assert 0 <= heard[0]["start_ms"] < heard[-1]["end_ms"] <= spoken_ms + SILENCE_MS
    [say] = session.take_jobs()
    assert isinstance(say, Synthesize) and say.text == "You said: hello there"
    reply = b"\x01\x00" * (24 * 1000)  # one second
    session.synthesis_done(say, reply)
    out = chunks(session)
    audio = b"".join(base64.b64decode(e["delta"]) for e in out
                     if e["type"] == "session.output_audio.delta")
    assert audio == reply
    words = [e for e in out if e["type"] == "session.output_transcript.delta"]
    assert "".join(e["delta"] for e in words) == "You said: hello there"
    # Output starts where the session is (after the turn) and its words tile one second.
    assert words[0]["start_ms"] == session.now_ms
    assert words[-1]["end_ms"] == session.now_ms + 1000
    assert all(a["end_ms"] == b["start_ms"] for a, b in zip(words, words[1:], strict=False))


def test_live_session_interruption_drops_what_was_not_said(speech: bytes) -> None:
    session = started()
    session.synthesis_done(Synthesize("out_1", "one two three four five six", "en", 175),
                           b"\x01\x00" * (24 * 3000))
    first = session.next_response_chunk()
    assert first is not None and first.audio_ms == 0  # one delta ahead
    said = [e["delta"] for e in first.events if e["type"] == "session.output_transcript.delta"]
    append(session, speech[: 600 * BYTES_PER_MS])  # the user speaks over it
    assert session.next_response_chunk() is None
    assert said and "".join(said) != "one two three four five six"


def test_live_session_client_delegation_round_trips_commentary(speech: bytes) -> None:
    session = started({"type": "client"})
    job = hear_turn(session, speech)
    events = checked(session.transcription_done(job, "book a table"))
    [delegated] = [e for e in events if e["type"] == "session.delegation.created"]
    assert delegated["delegation"]["target"] == "client"
    assert delegated["offset_ms"] >= events[0]["start_ms"]
    assert session.take_jobs() == []  # delegated, not answered
    [error] = checked(session.receive_event({
        "type": "session.commentary.append", "content": "Done.", "delegation_id": "del_x"}))
    assert error["error"]["code"] == "delegation_not_found"
    [ack] = checked(session.receive_event({
        "type": "session.commentary.append", "event_id": "c1", "content": "Your table is booked.",
        "delegation_id": delegated["delegation"]["id"]}))
    assert ack["type"] == "session.commentary.appended" and ack["client_event_id"] == "c1"
    [say] = session.take_jobs()
    assert isinstance(say, Synthesize) and say.text == "Your table is booked."


def test_live_session_mute_sends_silence_to_the_detector(speech: bytes) -> None:
    session = started()
    [muted] = checked(session.receive_event({"type": "session.input_audio.mute"}))
    assert muted["type"] == "session.input_audio.muted"
    append(session, speech + bytes(SILENCE_MS * BYTES_PER_MS))
    assert session.take_jobs() == []
    [unmuted] = checked(session.receive_event({"type": "session.input_audio.unmute"}))
    assert unmuted["type"] == "session.input_audio.unmuted"


def test_live_session_update_changes_delegation_only() -> None:
    session = started({"type": "client"})
    [updated] = checked(session.receive_event({
        "type": "session.update",
        "session": {"delegation": {"type": "client", "acknowledgement_delay_ms": 200}}}))
    assert updated["session"]["delegation"]["acknowledgement_delay_ms"] == 200
    [error] = checked(session.receive_event({"type": "session.update",
                                             "session": {"instructions": "x"}}))
    assert error["error"]["code"] == "immutable_parameter"


def test_live_session_close_ends_with_session_closed() -> None:
    session = started()
    [closed] = checked(session.receive_event({"type": "session.close", "event_id": "z"}))
    assert closed["type"] == "session.closed" and closed["reason"] == "close_requested"
    assert closed["client_event_id"] == "z" and session.finished
    [error] = checked(session.receive_event({"type": "session.input_audio.mute"}))
    assert error["error"]["code"] == "session_closed"
