"""Sideband control (``GET /v1/realtime?call_id=``) beside a live WebRTC call, over real
sockets: an aiortc client on the call, raw WebSocket controllers on the sideband."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError
from aiohttp.client_ws import ClientWebSocketResponse
from aiohttp.test_utils import TestServer

from relay.client import CallClient
from relay.server.app import REGISTRY

from ..conftest import base_url, live_calls

FAST_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200}}}}


class Controller:
    """A raw sideband: collects every event, sends client events."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == WSMsgType.TEXT:
                self.events.append(json.loads(message.data))
                self._changed.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(event))

    async def wait_for(self, kind: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if event["type"] == kind and all(
                            event.get(k) == v for k, v in match.items()):
                        return event
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(find(), timeout)

    async def closed(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)


@asynccontextmanager
async def sideband(server: TestServer, call_id: str, key: str | None = None
                   ) -> AsyncIterator[Controller]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with ClientSession() as http, http.ws_connect(
            f"{base_url(server)}/v1/realtime?call_id={call_id}", headers=headers) as ws:
        controller = Controller(ws)
        try:
            yield controller
        finally:
            controller._reader.cancel()


def order_kept(sub: list[str], full: list[str]) -> bool:
    """Whether ``sub`` appears in ``full`` in the same order."""
    it = iter(full)
    return all(kind in it for kind in sub)


async def test_sideband_gets_the_calls_events_without_audio_or_greeting(
        relay, make_client, speech: bytes) -> None:
    client: CallClient = make_client(speech, session=FAST_VAD)
    await client.connect()
    await client.wait_for("session.created")
    assert client.call_id is not None
    async with sideband(relay, client.call_id) as controller:
        await client.wait_for("output_audio_buffer.stopped", timeout=30)
        await controller.wait_for("output_audio_buffer.stopped")
        kinds = controller.types()
        assert "session.created" not in kinds and "response.output_audio.delta" not in kinds
        for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.committed",
                     "response.created", "response.done", "output_audio_buffer.started"):
            assert kind in kinds, kind
        channel = client.types()
        assert order_kept(kinds, channel[channel.index(kinds[0]):])


async def test_sideband_session_update_is_seen_on_both(relay, make_client) -> None:
    client: CallClient = make_client()
    await client.connect()
    await client.wait_for("session.created")
    assert client.call_id is not None
    async with sideband(relay, client.call_id) as first, \
            sideband(relay, client.call_id) as second:
        await first.send({"type": "session.update", "event_id": "sb1",
                          "session": {"type": "realtime", "instructions": "from the server"}})
        updated = await first.wait_for("session.updated")
        assert updated["session"]["instructions"] == "from the server"
        on_channel = await client.wait_for("session.updated")
        assert on_channel["session"]["instructions"] == "from the server"
        await second.wait_for("session.updated")
        # A client event from the sideband drives the call: a text turn is answered.
        await second.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hello"}]}})
        await second.send({"type": "response.create"})
        await first.wait_for("response.done")
        await client.wait_for("response.done")
        # An error about a sideband's own event goes to that sideband only, whether the
        # relay or the upstream finds it.
        await first.send({"type": "session.update", "event_id": "bad1"})
        await first.send({"type": "conversation.item.delete", "item_id": "nope",
                          "event_id": "bad2"})
        await first.wait_for("error")
        for _ in range(50):
            if len([k for k in first.types() if k == "error"]) == 2:
                break
            await asyncio.sleep(0.02)
        errors = [e["error"]["event_id"] for e in first.events if e["type"] == "error"]
        assert sorted(errors) == ["bad1", "bad2"]
        await asyncio.sleep(0.2)
        assert "error" not in second.types() and "error" not in client.types()


async def test_sideband_hangup_closes_it_and_it_never_ends_the_call(relay,
                                                                   make_client) -> None:
    client: CallClient = make_client()
    await client.connect()
    assert client.call_id is not None
    async with sideband(relay, client.call_id) as controller:
        await controller.ws.close()
    await asyncio.sleep(0.2)
    assert live_calls(relay) == 1  # a sideband leaving never ends the call
    async with sideband(relay, client.call_id) as controller:
        assert await client.hangup() == 200
        await controller.closed()
        assert controller.ws.close_code == 1000


async def test_sideband_unknown_call_and_client_keys_are_refused(relay_factory,
                                                                 make_client) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    async with ClientSession() as http:
        url = f"{base_url(server)}/v1/realtime?call_id=rtc_u1_nope"
        async with http.get(url, headers={"Authorization": "Bearer sk-server",
                                          "Upgrade": "websocket", "Connection": "Upgrade",
                                          "Sec-WebSocket-Version": "13",
                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                            ) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "call_id_not_found"
        for headers in ({"Authorization": "Bearer ek_client"}, {}, {"api-key": "sk-wrong"}):
            with pytest.raises(WSServerHandshakeError) as info:
                await http.ws_connect(url, headers=headers)
            assert info.value.status == 401
        # The api-key header form is a server key too.
        async with http.post(f"{base_url(server)}/v1/realtime/client_secrets",
                             headers={"api-key": "sk-server"}, json={}) as response:
            assert response.status == 200


async def test_sideband_too_slow_is_closed_and_the_call_goes_on(relay_factory, make_client,
                                                                speech: bytes) -> None:
    # The client floods its channel on purpose here: lift its message rate.
    server = await relay_factory(sideband_max_events=20, client_message_rate=100_000)
    client: CallClient = make_client(server=server)
    await client.connect()
    await client.wait_for("session.created")
    assert client.call_id is not None
    # A controller that never reads: a raw socket with a tiny receive window.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(slow, ("127.0.0.1", server.port))
    await loop.sock_sendall(slow, (
        f"GET /v1/realtime?call_id={client.call_id} HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    try:
        call = server.app[REGISTRY].get(client.call_id)
        for _ in range(100):
            if call.stats()["sidebands"] == 1:
                break
            await asyncio.sleep(0.02)
        # Flood the call with events (each text item: added and done, to every sideband).
        text = "x" * 2000
        for index in range(300):
            client.send({"type": "conversation.item.create", "event_id": f"c{index}", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}})
        for _ in range(250):
            if call.stats()["sidebands_too_slow"] == 1:
                break
            await asyncio.sleep(0.02)
        stats = call.stats()
        assert stats["sidebands_too_slow"] == 1 and stats["sidebands"] == 0
        # The call is untouched: its audio still flows and a turn is still answered.
        frames = stats["frames_out"]
        client.source.play(speech)  # type: ignore[attr-defined]
        done = len(client.events)
        await client.wait_for("response.done", timeout=30, after=done)
        assert call.stats()["frames_out"] > frames + 25
        assert live_calls(server) == 1
    finally:
        slow.close()
