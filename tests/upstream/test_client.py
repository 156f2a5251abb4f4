"""The upstream WebSocket client against a real aiohttp WebSocket server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from relay.errors import UpstreamError
from relay.upstream.client import (
    MAX_MESSAGE_BYTES,
    UpstreamClosed,
    UpstreamWebSocket,
    connect_upstream,
)

KEY = "sk-test-not-a-real-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(aiohttp_server: Any, handler: Handler) -> str:
    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    server = await aiohttp_server(app)
    return f"ws://127.0.0.1:{server.port}/v1/realtime"


async def test_upstream_client_messages_both_ways_with_the_headers(aiohttp_server) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        seen["authorization"] = request.headers.get("Authorization")
        seen["extensions"] = request.headers.get("Sec-WebSocket-Extensions")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"session.created"}')
        await ws.send_bytes(b"\x00\x01")
        seen["received"] = await ws.receive_str()
        await ws.close()
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    await upstream.send('{"type":"session.update"}')
    assert [message async for message in upstream] == ['{"type":"session.created"}',
                                                       b"\x00\x01"]
    assert seen == {"authorization": f"Bearer {KEY}", "extensions": None,
                    "received": '{"type":"session.update"}'}
    assert upstream.close_code == 1000 and upstream.close_reason == ""
    await upstream.close()


async def test_upstream_client_close_code_and_reason_of_the_upstream(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"model crashed")
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert upstream.close_code is None  # open until the close is read
    assert [message async for message in upstream] == []
    assert (upstream.close_code, upstream.close_reason) == (1011, "model crashed")
    with pytest.raises(UpstreamClosed):
        await upstream.send("{}")
    await upstream.close()
    await upstream.close()  # safe twice
    assert (upstream.close_code, upstream.close_reason) == (1011, "model crashed")


async def test_upstream_client_close_frame_without_a_code_is_1005(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_frame(b"", WSMsgType.CLOSE)
        await asyncio.sleep(1)
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert [message async for message in upstream] == []
    assert upstream.close_code == 1005
    await upstream.close()


async def test_upstream_client_dropped_connection_is_1006(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("last")
        assert request.transport is not None
        request.transport.abort()  # no close frame: the process died, the network broke
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert [message async for message in upstream] == ["last"]
    assert upstream.close_code == 1006  # worth a new session (aiohttp itself says 1000)
    with pytest.raises(UpstreamClosed):
        await upstream.send("{}")
    await upstream.close()


async def test_upstream_client_close_here_ends_the_iteration(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert isinstance(upstream, UpstreamWebSocket)

    async def read() -> list[str | bytes]:
        return [message async for message in upstream]

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.1)
    await upstream.close()
    assert await asyncio.wait_for(reader, 5) == []
    assert upstream.close_code == 1000
    await upstream.close()
    assert upstream._session.closed
    with pytest.raises(UpstreamClosed):
        await upstream.send("{}")


async def test_upstream_client_too_large_a_message_closes_with_1009(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str("x" * MAX_MESSAGE_BYTES)  # fits
        await ws.send_str("x" * (MAX_MESSAGE_BYTES + 1))
        async for _ in ws:
            pass
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    lengths = [len(message) async for message in upstream]
    assert lengths == [MAX_MESSAGE_BYTES]
    assert upstream.close_code == 1009
    await upstream.close()


@pytest.mark.parametrize(("status", "code"), [(401, "upstream_unauthorized"),
                                              (403, "upstream_unauthorized"),
                                              (500, "upstream_error")])
async def test_upstream_client_refused_handshake(aiohttp_server, status: int,
                                                 code: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="no")

    with pytest.raises(UpstreamError) as raised:
        await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert raised.value.code == code and f"HTTP {status}" in str(raised.value)
    # Nothing chained: aiohttp's errors carry the request's headers, the key among them.
    assert raised.value.__cause__ is None and KEY not in repr(raised.value)


async def test_upstream_client_unreachable() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # closed: nothing listens there
    with pytest.raises(UpstreamError) as raised:
        await connect_upstream(f"ws://127.0.0.1:{port}/v1/realtime", HEADERS)
    assert raised.value.code == "upstream_error" and "could not be reached" in str(raised.value)


async def test_upstream_client_open_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamError, match="TimeoutError"):
            await connect_upstream(f"ws://127.0.0.1:{port}/", HEADERS, timeout=0.3)
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        server.close()


async def test_upstream_client_repr_names_no_key(aiohttp_server) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    upstream = await connect_upstream(await serve(aiohttp_server, handler), HEADERS)
    assert KEY not in repr(upstream) and "open" in repr(upstream)
    await upstream.close()
    assert "closed" in repr(upstream)
