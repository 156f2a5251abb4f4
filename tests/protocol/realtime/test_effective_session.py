"""The full effective session (relay.protocol.realtime.session_config.effective_session),
checked against the official SDK's typed model of a realtime session."""

from __future__ import annotations

import pytest
from openai.types.realtime.realtime_session_create_response import (
    AudioInputTurnDetectionSemanticVad,
    RealtimeSessionCreateResponse,
)

from relay.errors import InvalidRequest
from relay.protocol.realtime.session_config import PCM24K, default_session, effective_session


def test_effective_session_of_nothing_is_the_ga_defaults() -> None:
    session = effective_session({}, model="gpt-realtime", expires_at=1234)
    assert session["id"].startswith("sess_") and session["object"] == "realtime.session"
    assert (session["type"], session["model"], session["expires_at"]) == (
        "realtime", "gpt-realtime", 1234)
    defaults = default_session("gpt-realtime")
    for key in ("output_modalities", "instructions", "audio", "tools", "tool_choice",
                "max_output_tokens", "tracing", "truncation"):
        assert session[key] == defaults[key], key
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    typed = RealtimeSessionCreateResponse.model_validate(session)
    assert typed.audio is not None and typed.audio.output is not None
    assert typed.audio.output.voice == "alloy"


def test_effective_session_lays_the_request_over_the_defaults() -> None:
    session = effective_session({
        "type": "realtime", "instructions": "Be brief.", "voice": "verse",
        "audio": {"input": {"turn_detection": {"silence_duration_ms": 300}}},
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    })
    assert session["instructions"] == "Be brief."
    assert session["audio"]["output"] == {"format": PCM24K, "voice": "verse", "speed": 1.0}
    turn = session["audio"]["input"]["turn_detection"]
    assert (turn["type"], turn["silence_duration_ms"], turn["threshold"]) == (
        "server_vad", 300, 0.5)
    assert session["tools"][0]["name"] == "lookup"
    RealtimeSessionCreateResponse.model_validate(session)


def test_effective_session_an_object_of_another_type_replaces_the_default() -> None:
    session = effective_session({"audio": {
        "input": {"format": {"type": "audio/pcmu"},
                  "turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
    }})
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "high"}
    typed = RealtimeSessionCreateResponse.model_validate(session)
    assert typed.audio is not None and typed.audio.input is not None
    assert isinstance(typed.audio.input.turn_detection, AudioInputTurnDetectionSemanticVad)


def test_effective_session_identity_and_model_are_the_servers() -> None:
    session = effective_session({"id": "sess_mine", "object": "x", "model": "other"},
                                model="gpt-realtime")
    assert session["id"] != "sess_mine" and session["object"] == "realtime.session"
    assert session["model"] == "gpt-realtime"
    assert effective_session({})["id"] != effective_session({})["id"]


def test_effective_session_refuses_a_session_that_cannot_be_a_call() -> None:
    with pytest.raises(InvalidRequest):
        effective_session({"type": "conversation"})
