"""The local Realtime server end to end, through real WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from relay.upstream.local import LocalRealtimeServer

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
