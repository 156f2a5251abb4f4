"""The embedded server's GPT-Live face over a real WebSocket: the path picks the face, a
session closes with ``session.closed`` and then its socket, and the Realtime face beside it
is unchanged."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pydantic
from openai.types.live import ServerEvent
from websockets.asyncio.client import connect

from relay.upstream.local import LocalRealtimeServer

ORACLE: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)


async def test_live_server_session_closes_with_session_closed_then_its_socket() -> None:
    async with LocalRealtimeServer(mode="parrot") as server:
        assert server.live_url.endswith("/v1/live/sessions")
        async with connect(server.live_url) as ws:
            await ws.send(json.dumps({"type": "session.start",
                                      "session": {"model": "gpt-live-1"}}))
            started = json.loads(await ws.recv())
            ORACLE.validate_python(started)
            await ws.send(json.dumps({"type": "session.close", "event_id": "bye"}))
            closed = json.loads(await ws.recv())
            ORACLE.validate_python(closed)
            assert (closed["type"], closed["client_event_id"]) == ("session.closed", "bye")
            await ws.wait_closed()
            assert ws.close_code == 1000
        async with connect(server.url) as realtime:
            assert json.loads(await realtime.recv())["type"] == "session.created"


async def test_live_server_parrot_plays_a_turn_back_in_real_time(speech: bytes) -> None:
    async with LocalRealtimeServer(mode="parrot") as server:
        async with connect(server.live_url) as ws:
            await ws.send(json.dumps({"type": "session.start",
                                      "session": {"model": "gpt-live-1"}}))
            await ws.recv()
            pcm = speech + bytes(48 * 1500)
            for i in range(0, len(pcm), 4800):
                await ws.send(json.dumps({"type": "session.input_audio.append",
                                          "audio": base64.b64encode(pcm[i:i + 4800]).decode()}))
            loop = asyncio.get_running_loop()
            first = None
            played = 0
            while played < len(speech) // 2:
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                ORACLE.validate_python(event)
                if event["type"] == "session.output_audio.delta":
                    first = first or loop.time()
                    played += len(base64.b64decode(event["delta"]))
            # Half of the turn played back took about half its length: real time, with one
            # delta of lead (the parrot plays at the pace a listener hears it).
            elapsed = loop.time() - (first or loop.time())
            assert elapsed > len(speech) / 48 / 1000 / 2 - 0.3
