"""Calls end cleanly however they end, and leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import json
import resource

from aiohttp import ClientWebSocketResponse
from aiortc import RTCPeerConnection
from websockets.asyncio.server import ServerConnection, serve

from relay.client import CallClient, PcmSource
from relay.server.call_driver import CallDriver
from relay.upstream.client import UpstreamWebSocket

from ..conftest import LOOPBACK, base_url, live_calls


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def count(kind: type) -> int:
    gc.collect()
    # type(), not isinstance(): isinstance falls back on an object's __class__, and lazy
    # proxies (openai's) load what they stand for when asked it, tens of MB at once.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), kind))


async def test_lifecycle_peer_close_ends_the_call(relay, make_client) -> None:
    client: CallClient = make_client()
    await client.connect()
    await client.wait_for("session.created")
    await client.pc.close()
    await wait_until(lambda: live_calls(relay) == 0)


async def test_lifecycle_upstream_close_tells_the_client_then_ends(relay_factory,
                                                                   make_client) -> None:
    async def upstream(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "event_id": "e1",
                                  "session": {"type": "realtime"}}))
        await ws.recv()  # the relay's session.update
        await asyncio.sleep(0.5)
        await ws.close(1011, "model crashed")

    async with serve(upstream, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        # A new session would crash the same way: the relay gives up after its window.
        server = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                     upstream_reconnect_seconds=1.0)
        client: CallClient = make_client(server=server)
        await client.connect()
        error = await client.wait_for("error", timeout=30)
        assert error["error"]["code"] == "upstream_closed" and "1011" in error["error"]["message"]
        await wait_until(lambda: live_calls(server) == 0)
        await wait_until(lambda: client.pc.connectionState in ("closed", "failed"), 15)


async def test_lifecycle_unreachable_upstream_is_a_502(relay_factory, make_client) -> None:
    server = await relay_factory(upstream_url="ws://127.0.0.1:9/v1/realtime", api_key="sk-xyz")
    client: CallClient = make_client(server=server)
    try:
        await client.connect()
        raise AssertionError("call created without an upstream")
    except RuntimeError as exc:
        assert "502" in str(exc) and "sk-xyz" not in str(exc)
    assert live_calls(server) == 0


async def test_lifecycle_fifty_calls_leave_nothing_behind(relay) -> None:
    async def one_call() -> None:
        client = CallClient(base_url(relay), PcmSource(), ice_addresses=LOOPBACK)
        try:
            await client.connect()
            await client.wait_for("session.created")
            assert await client.hangup() == 200
        finally:
            await client.close()

    for _ in range(5):  # warm up caches and pools
        await one_call()
    await asyncio.sleep(0.5)
    # Freeze what lives on, as relay.server.serve.serve does: otherwise every module the
    # suite imported (openai alone adds some 50,000 objects) makes the collector's full
    # passes rare, and the calls' garbage cycles pile up into peak RSS (47 MB over 50
    # calls instead of 7 MB) though nothing leaks.
    gc.collect()
    gc.freeze()
    try:
        tasks_before = len(asyncio.all_tasks())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(50):
            await one_call()
        await wait_until(lambda: live_calls(relay) == 0)
        await asyncio.sleep(1.0)  # let closing transports finish
        assert len(asyncio.all_tasks()) <= tasks_before
        assert count(CallDriver) == 0
        assert count(RTCPeerConnection) == 0
        assert count(UpstreamWebSocket) == 0
        assert count(ClientWebSocketResponse) == 0
        assert count(ServerConnection) == 0
        growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        assert growth_kib < 40_000, f"peak RSS grew {growth_kib} KiB over 50 calls"
    finally:
        gc.unfreeze()
