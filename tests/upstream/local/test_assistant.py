"""The assistant mode and input transcription on LocalSession: plain synchronous calls, with
the speech jobs' results handed back by the test (what a worker would return).

Every event is checked against the official ``openai`` package's models of the Realtime
server events.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from relay.upstream.local.assistant import NOT_CAUGHT, NOTHING_HEARD, Synthesize, Transcribe
from relay.upstream.local.local_session import LocalSession
from relay.upstream.local.synthesizer import ESPEAK_VOICES, WORDS_PER_MINUTE

from .signals import chunks, silence, tone

Event = dict[str, Any]

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
UTTERANCE = silence(300) + tone(1000) + silence(700)
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
OPENING = ["response.output_item.added", "conversation.item.added",
           "response.content_part.added"]


def conforming(events: list[Event]) -> list[Event]:
    for event in events:
        SERVER_EVENT.validate_python(event)
    return events


def send(session: LocalSession, event: Event) -> list[Event]:
    return conforming(session.receive_event(event))


def assistant(**session: Any) -> LocalSession:
    """An assistant session with ``session`` applied (``transcription``: its model)."""
    local = LocalSession(mode="assistant")
    model = session.pop("transcription", None)
    config: Event = {"type": "realtime", **session}
    if model is not None:
        config["audio"] = {"input": {"transcription": {"model": model}}}
    send(local, {"type": "session.update", "session": config})
    return local


def speak(session: LocalSession, pcm: bytes = UTTERANCE) -> list[Event]:
    events: list[Event] = []
    for piece in chunks(pcm):
        events += send(session, {"type": "input_audio_buffer.append",
                                 "audio": base64.b64encode(piece).decode()})
    return events


def write(session: LocalSession, text: str) -> list[Event]:
    return send(session, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def drain(session: LocalSession) -> list[Event]:
    events: list[Event] = []
    while (chunk := session.next_response_chunk()) is not None:
        events += chunk.events
    return conforming(events)


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def only(events: list[Event], kind: str) -> Event:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, types(events)
    return found[0]


def job(session: LocalSession, kind: type[Any]) -> Any:
    [found] = session.take_jobs()
    assert isinstance(found, kind)
    return found


def transcribed(session: LocalSession, words: str) -> list[Event]:
    return conforming(session.transcription_done(job(session, Transcribe), words))


def synthesized(session: LocalSession, pcm: bytes = tone(400)) -> tuple[Synthesize, list[Event]]:
    synth = job(session, Synthesize)
    return synth, conforming(session.synthesis_done(synth, pcm))


# -- input transcription ---------------------------------------------------------------------

def test_assistant_whisper_transcript_comes_in_one_delta_then_completed() -> None:
    session = LocalSession()  # a parrot transcribes too, when the session asks
    send(session, {"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}})
    committed = only(speak(session), "input_audio_buffer.committed")
    [request] = session.take_jobs()
    assert isinstance(request, Transcribe)
    assert (request.item_id, request.model, request.content_index) == (
        committed["item_id"], "whisper-1", 0)
    assert len(request.audio) % 48 == 0 and len(request.audio) >= 1000 * 48
    drain(session)
    events = conforming(session.transcription_done(request, "hello there"))
    assert types(events) == ["conversation.item.input_audio_transcription.delta",
                             "conversation.item.input_audio_transcription.completed"]
    delta, completed = events
    assert (delta["item_id"], delta["content_index"], delta["delta"]) == (
        request.item_id, 0, "hello there")
    assert completed["transcript"] == "hello there"
    assert completed["usage"] == {"type": "duration",
                                  "seconds": round(len(request.audio) / 48 / 1000, 3)}
    [retrieved] = send(session, {"type": "conversation.item.retrieve",
                                 "item_id": request.item_id})
    assert retrieved["item"]["content"][0]["transcript"] == "hello there"


def test_assistant_gpt4o_transcript_comes_word_by_word_with_token_usage() -> None:
    session = assistant(transcription="gpt-4o-transcribe")
    speak(session)
    events = transcribed(session, "what is the weather")
    deltas = [e["delta"] for e in events
              if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert deltas == ["what", " is", " the", " weather"]
    usage = only(events, "conversation.item.input_audio_transcription.completed")["usage"]
    assert usage["type"] == "tokens" and usage["total_tokens"] == (
        usage["input_tokens"] + usage["output_tokens"])


def test_assistant_empty_transcript_is_completed_without_delta() -> None:
    session = assistant(transcription="whisper-1")
    speak(session)
    events = [e for e in transcribed(session, "")
              if e["type"].startswith("conversation.item.input_audio_transcription")]
    assert types(events) == ["conversation.item.input_audio_transcription.completed"]
    assert events[0]["transcript"] == ""


def test_assistant_failed_transcription_is_reported_on_its_item() -> None:
    session = assistant(transcription="whisper-1")
    speak(session)
    request = job(session, Transcribe)
    events = conforming(session.transcription_failed(request, "no recognizer"))
    failed = only(events, "conversation.item.input_audio_transcription.failed")
    assert (failed["item_id"], failed["content_index"]) == (request.item_id, 0)
    assert failed["error"]["message"] == "no recognizer"
    # The reply answers as to silence.
    synth = job(session, Synthesize)
    assert synth.text == NOT_CAUGHT


def test_assistant_transcribes_for_itself_without_transcription_events() -> None:
    session = assistant()
    speak(session)
    request = job(session, Transcribe)
    assert request.model is None
    events = conforming(session.transcription_done(request, "good morning"))
    assert not [e for e in events if "transcription" in e["type"]]
    assert job(session, Synthesize).text == "You said: good morning"


def test_assistant_parrot_without_transcription_asks_for_no_job() -> None:
    session = LocalSession()
    speak(session)
    drain(session)
    assert session.take_jobs() == []


# -- spoken replies ------------------------------------------------------------------------------

def test_assistant_announces_the_response_then_speaks_the_transcript_back() -> None:
    session = assistant()
    turn = speak(session)
    assert types(turn)[-2:] == ["conversation.item.done", "response.created"]
    response_id = turn[-1]["response"]["id"]
    assert session.response_active and not session.has_pending_chunk
    assert transcribed(session, "what is the weather in paris") == []
    synth, opened = synthesized(session, tone(1000))
    assert synth == Synthesize(response_id, "You said: what is the weather in paris",
                               ESPEAK_VOICES["alloy"], WORDS_PER_MINUTE)
    assert types(opened) == OPENING
    assert {e["response_id"] for e in opened if "response_id" in e} == {response_id}
    rest = drain(session)
    audio = b"".join(base64.b64decode(e["delta"]) for e in rest
                     if e["type"] == "response.output_audio.delta")
    assert audio == tone(1000)
    words = "".join(e["delta"] for e in rest
                    if e["type"] == "response.output_audio_transcript.delta")
    assert words == synth.text
    done = only(rest, "response.done")["response"]
    assert (done["id"], done["status"]) == (response_id, "completed")
    assert done["output"][0]["content"][0]["transcript"] == synth.text
    assert not session.response_active


def test_assistant_answers_a_text_message_in_the_sessions_voice_and_speed() -> None:
    session = assistant(audio={"output": {"voice": "coral", "speed": 1.5}})
    write(session, "Hello there")
    created = send(session, {"type": "response.create"})
    assert types(created) == ["response.created"]
    synth, _ = synthesized(session)
    assert (synth.text, synth.voice, synth.rate) == (
        "You said: Hello there", "en-us+f2", round(WORDS_PER_MINUTE * 1.5))


def test_assistant_with_nothing_heard_says_so() -> None:
    session = assistant()
    send(session, {"type": "response.create"})
    assert job(session, Synthesize).text == NOTHING_HEARD


def test_assistant_answers_in_text_without_synthesis() -> None:
    session = assistant(output_modalities=["text"])
    write(session, "ping")
    events = send(session, {"type": "response.create"})
    assert types(events)[:2] == ["response.created", "response.output_item.added"]
    assert session.take_jobs() == []
    done = only(drain(session), "response.output_text.done")
    assert done["text"] == "You said: ping"


def test_assistant_calls_a_tool_named_in_the_transcript() -> None:
    session = assistant(tools=[WEATHER], tool_choice="auto")
    speak(session)
    events = transcribed(session, "please tell me the weather")
    assert types(events)[0] == "response.output_item.added"
    assert events[0]["item"]["type"] == "function_call"
    rest = drain(session)
    done = only(rest, "response.function_call_arguments.done")
    assert done["name"] == "get_weather"
    call_id = done["call_id"]
    send(session, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id, "output": "Sunny, 21 C"}})
    send(session, {"type": "response.create"})
    assert job(session, Synthesize).text == "I used get_weather: Sunny, 21 C"


def test_assistant_cancel_while_preparing_closes_with_no_output() -> None:
    session = assistant()
    write(session, "hi")
    [created] = send(session, {"type": "response.create"})
    synth = job(session, Synthesize)
    busy = send(session, {"type": "response.create"})
    assert only(busy, "error")["error"]["code"] == "conversation_already_has_active_response"
    events = send(session, {"type": "response.cancel"})
    assert types(events) == ["response.done", "rate_limits.updated"]
    done = events[0]["response"]
    assert (done["id"], done["status"], done["output"]) == (
        created["response"]["id"], "cancelled", [])
    assert done["status_details"]["reason"] == "client_cancelled"
    # The speech arrives after all: nothing comes of it.
    assert session.synthesis_done(synth, tone(300)) == []
    assert not session.response_active and session.next_response_chunk() is None


def test_assistant_barge_in_while_preparing_cancels_and_answers_the_new_turn() -> None:
    session = assistant()
    speak(session)
    first = job(session, Transcribe)
    events = speak(session, tone(600) + silence(700))
    assert types(events)[:2] == ["input_audio_buffer.speech_started", "response.done"]
    assert events[1]["response"]["status_details"]["reason"] == "turn_detected"
    assert types(events)[-1] == "response.created"
    second = job(session, Transcribe)
    assert session.transcription_done(first, "old words") == []
    session.transcription_done(second, "new words")
    assert job(session, Synthesize).text == "You said: new words"


def test_assistant_failed_synthesis_fails_the_response() -> None:
    session = assistant()
    write(session, "hi")
    send(session, {"type": "response.create"})
    synth = job(session, Synthesize)
    events = conforming(session.synthesis_failed(synth, "no voice"))
    done = only(events, "response.done")["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["message"] == "no voice"
    assert not session.response_active


@pytest.mark.parametrize("mode", ["assistant", "parrot"])
def test_assistant_close_while_preparing_cancels(mode: str) -> None:
    session = LocalSession(mode=mode)  # type: ignore[arg-type]
    write(session, "hi")
    send(session, {"type": "response.create"})
    events = conforming(session.close())
    assert only(events, "response.done")["response"]["status"] == "cancelled"
