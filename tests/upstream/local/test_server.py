"""The local Realtime server end to end, through real WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from relay.upstream.local import LocalRealtimeServer
from relay.upstream.local.workers import SpeechWorkers

from ...support.speech import ASK_WEATHER, SUNNY, SUNNY_WORDS, espeak, needs_espeak, words
from .signals import chunks, silence, tone

Event = dict[str, Any]


async def recv(ws: ClientConnection) -> Event:
    event: Event = json.loads(await asyncio.wait_for(ws.recv(), 2.0))
    return event


async def recv_until(ws: ClientConnection, kind: str) -> list[Event]:
    events: list[Event] = []
    while not events or events[-1]["type"] != kind:
        events.append(await recv(ws))
    return events


def only(events: list[Event], kind: str) -> Event:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, [e["type"] for e in events]
    return found[0]


async def append_all(ws: ClientConnection, pcm: bytes) -> None:
    for piece in chunks(pcm, 40):
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(piece).decode()}))


async def test_server_speaks_a_whole_turn_back() -> None:
    async with LocalRealtimeServer(speed=20.0) as server:
        assert server.url == f"ws://127.0.0.1:{server.port}/v1/realtime"
        async with connect(server.url + "?model=gpt-x",
                           additional_headers={"Authorization": "Bearer sk-anything"}) as ws:
            created = await recv(ws)
            assert created["type"] == "session.created"
            assert created["session"]["model"] == "gpt-x"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "parrot",
                "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                       "silence_duration_ms": 500}}}}}))
            updated = await recv(ws)
            assert updated["type"] == "session.updated"
            sent = tone(1000) + silence(1000)
            began = time.monotonic()
            await append_all(ws, sent)
            events = await recv_until(ws, "rate_limits.updated")
            elapsed = time.monotonic() - began
    kinds = [e["type"] for e in events]
    assert kinds[:9] == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.content_part.added",
    ]
    assert kinds[-7:] == [
        "response.output_audio.done", "response.output_audio_transcript.done",
        "response.content_part.done", "conversation.item.done", "response.output_item.done",
        "response.done", "rate_limits.updated",
    ]
    start = events[0]["audio_start_ms"]
    end = events[1]["audio_end_ms"]
    assert (start, end) == (0, 1500)
    played = b"".join(base64.b64decode(e["delta"]) for e in events
                      if e["type"] == "response.output_audio.delta")
    assert played == sent[start * 48:end * 48]
    # 1.5 s of audio at 20x: the last of 15 deltas goes out 14 x 5 ms after the first.
    assert 0.06 <= elapsed < 1.5
    assert events[-2]["response"]["status"] == "completed"
    assert len({e["event_id"] for e in events}) == len(events)


async def test_server_keeps_the_connection_after_errors() -> None:
    async with LocalRealtimeServer() as server, connect(server.url) as ws:
        await recv(ws)
        await ws.send("{oops")
        assert (await recv(ws))["error"]["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "nope", "event_id": "e1"}))
        error = await recv(ws)
        assert (error["error"]["param"], error["error"]["event_id"]) == ("type", "e1")
        await ws.send(json.dumps({"type": "response.cancel"}))
        assert (await recv(ws))["error"]["code"] == "response_cancel_not_active"


async def test_server_echo_mode_echoes_and_ends_on_close() -> None:
    server = LocalRealtimeServer("echo")
    await server.start()
    async with connect(server.url) as ws:
        await recv(ws)
        pcm = tone(40)
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(pcm).decode()}))
        opening = await recv_until(ws, "response.output_audio.delta")
        assert opening[0]["type"] == "response.created"
        assert base64.b64decode(opening[-1]["delta"]) == pcm
        await server.close()
        closing = await recv_until(ws, "rate_limits.updated")
        assert closing[-2]["type"] == "response.done"
        await ws.wait_closed()
        assert ws.close_code == 1001
    await server.close()  # safe twice


async def test_server_close_cancels_a_paced_response() -> None:
    server = LocalRealtimeServer(speed=1.0)
    await server.start()
    async with connect(server.url) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "response.create"}))
        await recv_until(ws, "response.output_audio.delta")
        assert _our_tasks()
        await asyncio.wait_for(server.close(), 2.0)
        closing = await recv_until(ws, "rate_limits.updated")
        assert closing[-2]["response"]["status"] == "cancelled"
        await ws.wait_closed()
    assert not _our_tasks()


def _our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("local-realtime-")]


async def test_server_observer_sees_each_client_event_before_it_is_handled() -> None:
    seen: list[tuple[str, Event]] = []
    async with LocalRealtimeServer(observer=lambda sid, event: seen.append((sid, event))
                                   ) as server, connect(server.url) as ws:
        created = await recv(ws)
        await ws.send("not json")
        assert (await recv(ws))["error"]["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "conversation.item.delete", "item_id": "nope",
                                  "event_id": "e1"}))
        error = await recv(ws)
        assert error["error"]["event_id"] == "e1"  # still handled as without an observer
    assert seen == [(created["session"]["id"], {"type": "conversation.item.delete",
                                                "item_id": "nope", "event_id": "e1"})]


# -- the assistant: speech in, speech out, through real worker processes ------------------------

TRANSCRIBED = "conversation.item.input_audio_transcription.completed"
SPEECH_TIMEOUT_S = 60.0  # a shared two-core machine can be slow to decode


async def events_until(ws: ClientConnection, kind: str) -> list[Event]:
    """Events up to and including the next of type ``kind``, waiting as long as speech
    work may take."""
    events: list[Event] = []
    async with asyncio.timeout(SPEECH_TIMEOUT_S):
        while not events or events[-1]["type"] != kind:
            events.append(json.loads(await ws.recv()))
    return events


def reply_audio(events: list[Event]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events
                    if e["type"] == "response.output_audio.delta")


async def assistant_socket(server: LocalRealtimeServer, **session: Any) -> ClientConnection:
    ws = await connect(server.url)
    await recv(ws)
    await ws.send(json.dumps({"type": "session.update",
                              "session": {"type": "realtime", **session}}))
    assert (await recv(ws))["type"] == "session.updated"
    return ws


@needs_espeak
async def test_server_transcribes_a_spoken_sentence_and_answers_it(
        speech_workers: SpeechWorkers) -> None:
    async with LocalRealtimeServer("assistant", speed=50.0, speech=speech_workers) as server:
        ws = await assistant_socket(server, audio={"input": {"transcription": {
            "model": "gpt-4o-transcribe"}}})
        async with ws:
            await append_all(ws, silence(300) + espeak(SUNNY) + silence(800))
            events = await events_until(ws, TRANSCRIBED)
            events += await events_until(ws, "response.done")
    committed = only(events, "input_audio_buffer.committed")
    completed = only(events, TRANSCRIBED)
    assert completed["item_id"] == committed["item_id"]
    assert SUNNY_WORDS <= words(completed["transcript"]), completed["transcript"]
    deltas = [e["delta"] for e in events
              if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == completed["transcript"]
    kinds = [e["type"] for e in events]
    assert kinds.index("response.created") < kinds.index(TRANSCRIBED) < kinds.index(
        "response.output_item.added")
    spoken = only(events, "response.output_audio_transcript.done")["transcript"]
    assert spoken == f"You said: {completed['transcript']}"
    heard = await speech_workers.transcribe(reply_audio(events))
    assert SUNNY_WORDS <= words(heard), heard


async def test_server_answers_a_text_message_with_speech_of_its_words(
        speech_workers: SpeechWorkers) -> None:
    async with LocalRealtimeServer("assistant", speed=50.0, speech=speech_workers) as server:
        ws = await assistant_socket(server)
        async with ws:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "The weather is sunny today"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            events = await events_until(ws, "response.done")
    spoken = only(events, "response.output_audio_transcript.done")["transcript"]
    assert spoken == "You said: The weather is sunny today"
    audio = reply_audio(events)
    assert 1.5 < len(audio) / 48000 < 4
    heard = await speech_workers.transcribe(audio)
    assert SUNNY_WORDS <= words(heard), heard


@needs_espeak
async def test_server_calls_a_tool_named_by_voice(speech_workers: SpeechWorkers) -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    async with LocalRealtimeServer("assistant", speed=50.0, speech=speech_workers) as server:
        ws = await assistant_socket(server, tools=[weather], tool_choice="auto")
        async with ws:
            await append_all(ws, silence(300) + espeak(ASK_WEATHER) + silence(800))
            events = await events_until(ws, "response.done")
            call = only(events, "response.function_call_arguments.done")
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call["call_id"],
                "output": "Sunny, 21 C"}}))
            await ws.send(json.dumps({"type": "response.create"}))
            report = await events_until(ws, "response.done")
    assert call["name"] == "get_weather"
    spoken = only(report, "response.output_audio_transcript.done")["transcript"]
    assert spoken == "I used get_weather: Sunny, 21 C"
    heard = await speech_workers.transcribe(reply_audio(report))
    assert {"used", "twenty", "one"} <= words(heard), heard


async def test_server_without_speech_parrots_and_says_so_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # as if not installed
    with caplog.at_level(logging.WARNING, "relay.upstream.local"):
        server = LocalRealtimeServer("assistant", speed=50.0)
    assert server.mode == "parrot"
    [warning] = caplog.records
    assert "parrots" in warning.getMessage() and "relay[speech]" in warning.getMessage()
    async with server:
        ws = await assistant_socket(server, audio={"input": {"transcription": {
            "model": "whisper-1"}}})
        async with ws:
            await append_all(ws, tone(600) + silence(800))
            events = await events_until(ws, "response.done")
            if TRANSCRIBED.replace("completed", "failed") not in [e["type"] for e in events]:
                events += await events_until(ws, TRANSCRIBED.replace("completed", "failed"))
    failed = only(events, "conversation.item.input_audio_transcription.failed")
    assert "pocketsphinx" in failed["error"]["message"]
    assert only(events, "response.done")["response"]["status"] == "completed"
    assert len(caplog.records) == 1
