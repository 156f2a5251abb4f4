"""Forwarding follow-up requests between two in-process relays sharing a real Redis: the
owner's answers come back as they are, a forwarded request is never forwarded again, and
Redis going away costs only the routing to other relays."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestServer

from relay.cluster.directory import OWNER_KEY
from relay.cluster.forward import (
    FORWARDED_HEADER,
    forward_websocket,
    passed_on,
    sendable_close_code,
)
from relay.cluster.ids import new_call_id, random_owner_id
from relay.server.app import NODE, REGISTRY, UPSTREAM, create_app

from ..conftest import base_url, loopback_settings
from ..support.redis import RedisServer

KEY = "sk-cluster-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_relay(aiohttp_server: Any, redis_url: str) -> TestServer:
    """A relay in this process on a real port, registered in Redis under that port."""
    port = _free_port()
    settings = loopback_settings(redis_url=redis_url, port=port, relay_api_keys=(KEY,),
                                 owner_ttl=3.0)
    server: TestServer = await aiohttp_server(create_app(settings), host="127.0.0.1",
                                              port=port)
    return server


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with ClientSession() as http, http.get(url, headers=headers or AUTH) as response:
        return response.status, await response.json()


def test_forward_passes_on_the_clients_headers_but_not_the_hops() -> None:
    headers = {"Authorization": "Bearer k", "api-key": "k2", "Origin": "https://a.example",
               "Host": "relay-b", "Connection": "keep-alive", "Content-Length": "3",
               "Sec-WebSocket-Key": "x", "Upgrade": "websocket", "X-Trace": "1"}
    kept = dict(passed_on(headers))
    assert kept == {"Authorization": "Bearer k", "api-key": "k2",
                    "Origin": "https://a.example", "Sec-WebSocket-Key": "x", "X-Trace": "1"}
    assert "Sec-WebSocket-Key" not in dict(passed_on(headers, websocket=True))


def test_forward_close_codes_go_on_as_they_came_unless_unsendable() -> None:
    assert [sendable_close_code(c) for c in (1000, 1013, 4000, None, 1005, 1006)] == [
        1000, 1013, 4000, 1000, 1000, 1011]


async def test_forward_describe_reaches_the_owner_through_another_relay(
        aiohttp_server, redis_db: RedisServer) -> None:
    a = await start_relay(aiohttp_server, redis_db.url)
    b = await start_relay(aiohttp_server, redis_db.url)
    call = a.app[REGISTRY].new({"type": "realtime"}, a.app[UPSTREAM],
                               call_id=a.app[NODE].new_call_id())
    try:
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{call.id}")
        assert status == 200 and body["id"] == call.id
        # The owner's refusals come back as the owner gave them.
        missing = new_call_id(a.app[NODE].owner)
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{missing}")
        assert status == 404 and body["error"]["code"] == "call_id_not_found"
        async with ClientSession() as http:
            with pytest.raises(WSServerHandshakeError) as info:
                await http.ws_connect(f"{base_url(b)}/v1/realtime?call_id={missing}",
                                      headers=AUTH)
            assert info.value.status == 404
            url = f"{base_url(b)}/v1/realtime/calls/{call.id}/hangup"
            async with http.post(url, headers={"api-key": KEY}) as response:
                assert response.status == 200 and await response.read() == b""
        assert len(a.app[REGISTRY]) == 0
        # Auth is checked before anything is forwarded.
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{call.id}",
                                 {"Authorization": "Bearer wrong"})
        assert status == 401
    finally:
        await call.close("test")


async def test_forward_a_forwarded_request_is_never_forwarded_again(
        aiohttp_server, redis_db: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    b = await start_relay(aiohttp_server, redis_db.url)
    # An owner whose entry leads back to b itself: without the guard, b would forward
    # the request to itself for ever.
    owner = random_owner_id()
    client = redis.Redis.from_url(redis_db.url)
    await client.set(OWNER_KEY + owner, base_url(b))
    await client.aclose()
    caplog.set_level(logging.WARNING, "relay.cluster.node")
    status, body = await get(f"{base_url(b)}/v1/realtime/calls/{new_call_id(owner)}")
    assert status == 404 and body["error"]["code"] == "call_id_not_found"
    guarded = [r for r in caplog.records if "not forwarded again" in r.getMessage()]
    assert len(guarded) == 1
    # A client cannot use the header to reach past the directory either.
    headers = {**AUTH, FORWARDED_HEADER: "1"}
    status, _ = await get(f"{base_url(b)}/v1/realtime/calls/{new_call_id(owner)}", headers)
    assert status == 404


async def test_forward_unknown_owners_and_strange_ids_are_404(
        aiohttp_server, redis_db: RedisServer) -> None:
    b = await start_relay(aiohttp_server, redis_db.url)
    for call_id in (new_call_id(random_owner_id()), "rtc_u1_nope", "x" * 40):
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{call_id}")
        assert status == 404 and body["error"]["code"] == "call_id_not_found", call_id


async def test_forward_redis_down_is_503_for_other_relays_calls_only(
        aiohttp_server, redis_db: RedisServer) -> None:
    a = await start_relay(aiohttp_server, redis_db.url)
    b = await start_relay(aiohttp_server, redis_db.url)
    theirs = new_call_id(a.app[NODE].owner)
    own = b.app[REGISTRY].new({"type": "realtime"}, b.app[UPSTREAM],
                              call_id=b.app[NODE].new_call_id())
    try:
        redis_db.stop()
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{theirs}")
        assert status == 503 and body["error"]["code"] == "routing_unavailable"
        status, body = await get(f"{base_url(b)}/v1/realtime/calls/{own.id}")
        assert status == 200 and body["id"] == own.id
        async with ClientSession() as http, http.get(f"{base_url(b)}/healthz") as response:
            assert response.status == 200
    finally:
        await own.close("test")


async def websocket_pair(aiohttp_server: Any) -> tuple[TestServer, TestServer, list[int]]:
    """An owner with a WebSocket that echoes (``/echo``), one that ends with its own code
    (``/closer``), one that refuses (``/refuse``); and a front that forwards all to it."""
    closed_with: list[int] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data + "!")
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        closed_with.append(ws.close_code or 0)
        return ws

    async def closer(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(request.headers.get("Authorization", ""))
        await ws.close(code=4002, message=b"owner done")
        return ws

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "call_id_not_found"}}, status=404)

    owner_app = web.Application()
    owner_app.router.add_get("/echo", echo)
    owner_app.router.add_get("/closer", closer)
    owner_app.router.add_get("/refuse", refuse)
    owner = await aiohttp_server(owner_app, host="127.0.0.1")

    async def front_handler(request: web.Request) -> web.StreamResponse:
        return await forward_websocket(request, base_url(owner), max_msg_size=1 << 20)

    front_app = web.Application()
    front_app.router.add_get("/{tail:.*}", front_handler)
    front = await aiohttp_server(front_app, host="127.0.0.1")
    return owner, front, closed_with


async def test_forward_websocket_frames_and_the_clients_close_code_reach_the_owner(
        aiohttp_server) -> None:
    _, front, closed_with = await websocket_pair(aiohttp_server)
    async with ClientSession() as http, http.ws_connect(f"{base_url(front)}/echo") as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi!"
        await ws.send_bytes(b"\x00\x01\x02")
        assert (await ws.receive()).data == b"\x02\x01\x00"
        await ws.close(code=4001, message=b"client done")
    deadline = asyncio.get_running_loop().time() + 5
    while not closed_with:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert closed_with == [4001]


async def test_forward_websocket_the_owners_close_code_and_headers_reach_the_client(
        aiohttp_server) -> None:
    _, front, _ = await websocket_pair(aiohttp_server)
    async with ClientSession() as http, http.ws_connect(f"{base_url(front)}/closer",
                                                        headers=AUTH) as ws:
        assert (await ws.receive()).data == AUTH["Authorization"]
        closing = await ws.receive()
        assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 4002,
                                                               "owner done")


async def test_forward_websocket_a_refusal_comes_back_before_the_upgrade(
        aiohttp_server) -> None:
    _, front, _ = await websocket_pair(aiohttp_server)
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with ClientSession() as http, http.get(f"{base_url(front)}/refuse",
                                                 headers=upgrade) as response:
        assert response.status == 404
        assert await response.json() == {"error": {"code": "call_id_not_found"}}
