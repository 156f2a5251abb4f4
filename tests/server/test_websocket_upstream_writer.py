"""A WebSocket session's upstream writes, against an in-memory upstream: what the client
sends reaches the upstream once each and in order, even while the upstream's sends wait
(a buffer draining); nothing is written once the upstream has closed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable

from aiohttp import ClientSession, ClientWebSocketResponse, web
from aiohttp.test_utils import TestServer

from relay.protocol.realtime.websocket_core import WebSocketSessionCore
from relay.server.websocket_session import WebSocketSession
from relay.upstream.client import UpstreamClosed

from ..support.upstream import FakeConnector, FakeSocket


class DrainingSocket(FakeSocket):
    """A session whose sends wait while ``gate`` is closed; closed for good (its sends
    raise :class:`UpstreamClosed`) once ``gone``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.attempts = 0
        self.gone = False

    async def send(self, message: str) -> None:
        self.attempts += 1
        if self.gone:
            raise UpstreamClosed("the upstream session has closed")
        await self.gate.wait()
        await super().send(message)


async def bridge(connector: FakeConnector) -> TestServer:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        core = WebSocketSessionCore("sess_test", {"type": "realtime"},
                                    clock=asyncio.get_running_loop().time)
        await WebSocketSession(core, connector, ws, model="gpt-realtime").run()
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def append(n: int) -> str:
    audio = base64.b64encode(bytes([n]) * 960).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


def appended(socket: FakeSocket) -> list[str]:
    return [str(e["audio"]) for e in socket.sent if e["type"] == "input_audio_buffer.append"]


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    for _ in range(round(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@contextlib.asynccontextmanager
async def draining_session() -> AsyncIterator[tuple[ClientWebSocketResponse, DrainingSocket]]:
    """A client's WebSocket session through the relay, and its upstream session."""
    connector = FakeConnector(socket_type=DrainingSocket)
    server = await bridge(connector)
    try:
        async with ClientSession() as http, http.ws_connect(
                f"ws://127.0.0.1:{server.port}/v1/realtime") as ws:
            await until(lambda: connector.sockets)
            socket = connector.sockets[0]
            assert isinstance(socket, DrainingSocket)
            yield ws, socket
    finally:
        await server.close()


async def test_websocket_session_upstream_writes_that_wait_keep_their_order() -> None:
    async with draining_session() as (ws, socket):
        for n in range(20):
            await ws.send_str(append(n))
        await asyncio.sleep(0.2)
        # One write waits (the session's first update); the rest wait behind it.
        assert socket.attempts == 1 and appended(socket) == []
        socket.gate.set()
        expected = [base64.b64encode(bytes([n]) * 960).decode() for n in range(20)]
        await until(lambda: len(appended(socket)) >= 20)
        assert appended(socket) == expected


async def test_websocket_session_writes_nothing_more_once_the_upstream_refused() -> None:
    async with draining_session() as (ws, socket):
        await until(lambda: socket.attempts >= 1)  # the session's first update waits
        socket.gone = True
        socket.gate.set()
        await ws.send_str(append(1))
        await until(lambda: socket.attempts >= 2)
        before = socket.attempts
        for n in range(2, 5):
            await ws.send_str(append(n))
        await asyncio.sleep(0.1)
        # The reader ends the session when the upstream's close arrives; until then
        # the writer tries no more.
        assert socket.attempts == before and appended(socket) == []
