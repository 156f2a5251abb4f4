"""The local server's transcription sessions (sans-I/O): turns detected, committed and
transcribed, logprobs when asked for, and nothing that answers."""

from __future__ import annotations

import base64
from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from relay.upstream.local.assistant import Transcribe
from relay.upstream.local.local_session import LocalSession

from .signals import chunks, silence, tone

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
UTTERANCE = silence(500) + tone(1000) + silence(1000)


def append(session: LocalSession, pcm: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for piece in chunks(pcm, 40):
        events += session.receive_event({"type": "input_audio_buffer.append",
                                         "audio": base64.b64encode(piece).decode()})
    return events


def test_transcription_intent_opens_a_transcription_session() -> None:
    session = LocalSession(intent="transcription")
    [created] = session.start()
    parsed = SERVER_EVENT.validate_python(created)
    assert parsed.session.type == "transcription"
    assert created["session"]["object"] == "realtime.transcription_session"


def test_transcription_session_commits_turns_and_never_answers() -> None:
    for mode in ("parrot", "echo", "assistant"):
        session = LocalSession(mode=mode, intent="transcription")
        [updated] = session.receive_event({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "transcription": {"model": "gpt-4o-transcribe"}}}}})
        SERVER_EVENT.validate_python(updated)
        events = append(session, UTTERANCE)
        assert [e["type"] for e in events] == [
            "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", "conversation.item.added",
            "conversation.item.done"], mode
        assert session.next_response_chunk() is None
        [job] = session.take_jobs()
        assert isinstance(job, Transcribe) and job.model == "gpt-4o-transcribe"
        assert not job.logprobs
        done = session.transcription_done(job, "hello there")
        assert [e["type"] for e in done] == [
            "conversation.item.input_audio_transcription.delta"] * 2 + [
            "conversation.item.input_audio_transcription.completed"]
        assert "logprobs" not in done[-1]
        for event in events + done:
            SERVER_EVENT.validate_python(event)
        [error] = session.receive_event({"type": "response.create", "event_id": "c1"})
        assert error["type"] == "error" and error["error"]["event_id"] == "c1"
        assert "transcription session" in error["error"]["message"]


def test_transcription_session_reports_logprobs_when_include_asks() -> None:
    session = LocalSession()  # opened as a realtime session, switched by session.update
    session.receive_event({"type": "session.update", "session": {
        "type": "transcription",
        "include": ["item.input_audio_transcription.logprobs"]}})
    assert session.config["type"] == "transcription"
    append(session, UTTERANCE)
    [job] = session.take_jobs()
    assert job.logprobs and job.model == "gpt-4o-transcribe"  # the default model
    done = session.transcription_done(job, "hello there", [("hello", -0.1), ("there", -0.7)])
    deltas, completed = done[:-1], done[-1]
    assert [d["logprobs"][0]["token"] for d in deltas] == ["hello", " there"]
    assert [p["logprob"] for p in completed["logprobs"]] == [-0.1, -0.7]
    assert completed["logprobs"][1]["bytes"] == list(b" there")
    for event in done:
        parsed = SERVER_EVENT.validate_python(event)
        assert parsed.logprobs is not None


def test_transcription_session_refuses_a_voice_update() -> None:
    session = LocalSession(intent="transcription")
    [error] = session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "instructions": "talk"}})
    assert error["error"]["param"] == "session.type"
    [error] = session.receive_event({"type": "session.update", "session": {
        "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
    assert error["error"]["param"] == "session.audio.input.format"
    assert session.config["type"] == "transcription"
