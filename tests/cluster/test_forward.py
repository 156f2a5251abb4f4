"""Forwarding follow-up requests between two in-process relays sharing a real Redis: the
owner's answers come back as they are, a forwarded request is never forwarded again, and
Redis going away costs only the routing to other relays."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import ClientSession, WSServerHandshakeError
from aiohttp.test_utils import TestServer

from relay.cluster.directory import OWNER_KEY
from relay.cluster.forward import FORWARDED_HEADER, passed_on, sendable_close_code
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
