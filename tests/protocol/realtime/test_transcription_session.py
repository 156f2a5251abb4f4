"""Transcription sessions in the session helpers and the call core: their GA shape,
layering under an operator's voice defaults, and a call that refuses response events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import ClientSecretCreateResponse, RealtimeServerEvent
from pydantic import TypeAdapter

from relay.errors import InvalidRequest
from relay.protocol.realtime.call_core import CallCore
from relay.protocol.realtime.policy import SessionRules
from relay.protocol.realtime.session_config import (
    effective_session,
    layer_sessions,
    normalize_session,
    pin_relay_formats,
)

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

CAPTIONS = {"type": "transcription", "audio": {"input": {
    "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "names"},
    "noise_reduction": {"type": "near_field"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}},
    "include": ["item.input_audio_transcription.logprobs"]}


def test_transcription_session_normalizes_in_its_ga_shape() -> None:
    session = normalize_session(CAPTIONS)
    assert session == CAPTIONS
    # Flat aliases translate as they do for a voice session.
    flat = normalize_session({"type": "transcription", "input_audio_format": "pcm16",
                              "input_audio_transcription": {"model": "whisper-1"}})
    assert flat["audio"]["input"]["transcription"] == {"model": "whisper-1"}


@pytest.mark.parametrize(("session", "param"), [
    ({"type": "transcription", "instructions": "x"}, "session.instructions"),
    ({"type": "transcription", "tools": []}, "session.tools"),
    ({"type": "transcription", "audio": {"output": {"voice": "ash"}}}, "session.audio.output"),
    ({"type": "transcription", "voice": "ash"}, "session.audio.output"),
    ({"type": "transcription", "include": ["item.logprobs"]}, "session.include"),
    ({"type": "transcription", "include": "x"}, "session.include"),
    ({"type": "translation"}, "session.type"),
])
def test_transcription_session_refuses_what_it_cannot_have(session: dict[str, Any],
                                                           param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        normalize_session(session)
    assert info.value.param == param and info.value.status == 400


def test_transcription_session_keeps_only_the_operators_input_settings() -> None:
    operator = {"instructions": "be brief", "audio": {
        "input": {"noise_reduction": {"type": "far_field"}}, "output": {"voice": "ash"}}}
    session = layer_sessions(operator, {"type": "transcription"})
    assert session == {"type": "transcription",
                       "audio": {"input": {"noise_reduction": {"type": "far_field"}}}}
    # A voice call over the same defaults keeps them all.
    assert layer_sessions(operator, {"type": "realtime"})["instructions"] == "be brief"


def test_transcription_session_and_a_voice_key_do_not_mix() -> None:
    rules = SessionRules({}, {}, "gpt-realtime")
    with pytest.raises(InvalidRequest) as info:
        rules.admit({"type": "transcription"}, {"type": "realtime"})
    assert info.value.param == "session.type"
    # A call that names no type takes its key's.
    session, _ = rules.admit({"type": "transcription"}, {"audio": {"input": {}}})
    assert session["type"] == "transcription"


def test_transcription_session_is_described_as_typed_clients_parse_it() -> None:
    described = effective_session(CAPTIONS, expires_at=1_900_000_000)
    parsed = ClientSecretCreateResponse.model_validate(
        {"value": "ek_x", "expires_at": 1_900_000_000, "session": described})
    assert parsed.session.type == "transcription"
    assert parsed.session.object == "realtime.transcription_session"
    assert parsed.session.audio.input.transcription.model == "gpt-4o-transcribe"
    assert parsed.session.include == ["item.input_audio_transcription.logprobs"]
    assert "model" not in described and "instructions" not in described
    # The relay pins only the input format: a transcription session has no output.
    assert "output" not in pin_relay_formats(CAPTIONS)["audio"]


def _call() -> CallCore:
    core = CallCore("rtc_captions", normalize_session(CAPTIONS), max_playout_samples=24000,
                    clock=lambda: 0.0)
    core.channel_opened()
    core.start()
    [initial] = core.drain_upstream()
    assert initial["session"]["type"] == "transcription"
    core.upstream_message(json.dumps({
        "type": "session.updated", "event_id": "ev_1",
        "session": {**effective_session(CAPTIONS)}}))
    return core


def test_transcription_session_call_refuses_responses_and_goes_on() -> None:
    core = _call()
    [created] = core.drain_client()
    assert SERVER_EVENT.validate_python(created).session.type == "transcription"
    for kind in ("response.create", "response.cancel", "output_audio_buffer.clear"):
        core.client_message(json.dumps({"type": kind, "event_id": f"c_{kind}"}))
        [error] = core.drain_client()
        SERVER_EVENT.validate_python(error)
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["event_id"] == f"c_{kind}" and "transcription" in \
            error["error"]["message"]
    assert core.drain_upstream() == []
    # The same from a sideband.
    core.attach_sideband("sideband-1")
    core.client_message(json.dumps({"type": "response.create"}), "sideband-1")
    assert [e["type"] for e in core.drain_sideband("sideband-1")] == ["error"]
    # The session may change, but not its type.
    core.client_message(json.dumps({"type": "session.update", "session": {
        "audio": {"input": {"transcription": {"language": "de"}}}}}))
    [update] = core.drain_upstream()
    assert update["session"]["type"] == "transcription"
    core.client_message(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "instructions": "talk"}}))
    [error] = core.drain_client()
    assert error["error"]["param"] == "session.type"
    assert core.session_type == "transcription" and core.end_reason is None
