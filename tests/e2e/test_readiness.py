"""``GET /readyz`` over real sockets: the upstream going away and coming back, and the
call limit; ``/healthz`` stays liveness only."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from websockets.asyncio.server import ServerConnection, serve

from relay.client import CallClient, PcmSource
from relay.server.readiness import UpstreamProbe

from ..conftest import RelayFactory, base_url


async def get(server: TestServer, path: str) -> tuple[int, dict[str, Any]]:
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}{path}") as response:
            return response.status, await response.json()


async def becomes(server: TestServer, status: int, seconds: float = 6.0) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers ``status`` (the probe runs every 2 s)."""
    for _ in range(int(seconds / 0.05)):
        got, body = await get(server, "/readyz")
        if got == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz stayed {got}: {body}")


async def ignore(connection: ServerConnection) -> None:
    await connection.wait_closed()


async def test_readyz_follows_the_upstream_down_and_back(
        relay_factory: RelayFactory) -> None:
    upstream = await serve(ignore, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    relay = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                api_key="sk-test")
    body = await becomes(relay, 200)
    assert body["status"] == "ready" and body["calls"] == 0
    upstream.close()
    await upstream.wait_closed()
    body = await becomes(relay, 503)
    assert body["status"] == "not_ready"
    assert f"127.0.0.1:{port}" in body["reason"] and "unreachable" in body["reason"]
    assert (await get(relay, "/healthz"))[0] == 200  # alive, just not ready
    upstream = await serve(ignore, "127.0.0.1", port)
    try:
        await becomes(relay, 200)
    finally:
        upstream.close()
        await upstream.wait_closed()


async def test_readyz_is_503_at_the_call_limit(relay_factory: RelayFactory) -> None:
    relay = await relay_factory(max_calls=1)
    await becomes(relay, 200, seconds=0.1)  # the embedded upstream: ready at once
    client = CallClient(base_url(relay), PcmSource(b""), ice_addresses=("127.0.0.1",))
    try:
        await client.connect()
        body = await becomes(relay, 503, seconds=0.1)
        assert body["reason"] == "at the limit of 1 concurrent calls"
        assert body["calls"] == 1
        await client.hangup()
        await becomes(relay, 200, seconds=0.1)
    finally:
        await client.close()



async def test_readyz_probe_waits_while_live_calls_hold_upstream_sessions() -> None:
    """Live calls' own upstream sessions stand for the probe: no connection is made then
    (against a real server it cost live calls round-trip time), and the upstream counts as
    reachable; once the relay is idle, the probe connects again."""
    accepted = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    upstream = await asyncio.start_server(count, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    busy = True
    probe = UpstreamProbe(f"ws://127.0.0.1:{port}/v1/realtime", interval=0.05,
                          busy=lambda: busy)
    try:
        probe.start()
        await asyncio.sleep(0.3)
        assert probe.problem is None and accepted == 0
        busy = False
        await asyncio.sleep(0.3)
        assert probe.problem is None and accepted >= 2
        upstream.close()
        await upstream.wait_closed()
        await asyncio.sleep(0.3)
        assert probe.problem is not None and "unreachable" in probe.problem
    finally:
        await probe.close()
        upstream.close()
