"""Graceful drain over real sockets: new calls refused, live calls kept up to the drain
timeout and then told why they end; the in-process app first, then a real ``relay serve``
stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from relay.client import CallClient, PcmSource
from relay.server.app import DRAIN, REGISTRY
from relay.server.app_state import WS_SESSIONS

from ..conftest import LOOPBACK, RelayFactory, base_url, live_calls
from ..support.processes import stop
from .test_call_e2e import rms
from .test_cli import free_port, start, wait_healthy


async def get(url: str, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        return response.status, await response.json()


async def post(url: str, path: str, body: str, content_type: str,
               ) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
            url + path, data=body, headers={"Content-Type": content_type,
                                            "Authorization": "Bearer sk-test"}) as response:
        return response.status, dict(response.headers), await response.json()


async def refuses_new_calls(url: str) -> None:
    """New calls and client secrets: 503 relay_draining, with Retry-After; /readyz 503."""
    status, body = await get(url, "/readyz")
    assert (status, body["status"], body["reason"]) == (503, "not_ready", "draining")
    status, headers, error = await post(url, "/v1/realtime/calls", "v=0\r\n", "application/sdp")
    assert status == 503 and headers["Retry-After"] == "5"
    assert error["error"]["code"] == "relay_draining"
    assert error["error"]["type"] == "server_error"
    status, headers, error = await post(url, "/v1/realtime/client_secrets", "{}",
                                        "application/json")
    assert (status, error["error"]["code"]) == (503, "relay_draining")
    status, body = await get(url, "/healthz")
    assert status == 200 and body["draining"] is True  # alive, only not ready


async def hears_speech(client: CallClient, source: PcmSource, speech: bytes) -> None:
    """The call's audio still flows: what is spoken now comes back (echo upstream)."""
    heard = len(client.received)
    source.play(speech[: 24000 * 2])  # one second
    for _ in range(100):
        if rms(bytes(client.received[heard:])) > 300:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the live call's audio stopped during the drain")


async def live_call(url: str) -> tuple[CallClient, PcmSource]:
    source = PcmSource()
    client = CallClient(url, source, ice_addresses=LOOPBACK)
    await client.connect()
    await client.wait_for("session.created")
    return client, source


def begin_drain(server: TestServer) -> asyncio.Task[None]:
    drain = server.app[DRAIN]
    drain.begin("test")
    return asyncio.get_running_loop().create_task(
        drain.run(server.app[REGISTRY], server.app[WS_SESSIONS]))


async def test_drain_refuses_new_calls_keeps_the_live_one_then_ends_it_with_an_error(
        relay_factory: RelayFactory, speech: bytes) -> None:
    server = await relay_factory(local_mode="echo", drain_timeout=2.0)
    url = base_url(server)
    client, source = await live_call(url)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        draining = begin_drain(server)
        await refuses_new_calls(url)
        await hears_speech(client, source, speech)
        async with aiohttp.ClientSession() as http:  # follow-up requests still work
            async with http.get(f"{url}/v1/realtime/calls/{client.call_id}") as response:
                assert response.status == 200 and (await response.json())["status"] == "live"
        error = await client.wait_for("error", timeout=10)
        assert error["error"]["code"] == "server_shutting_down"
        assert "restarting" in error["error"]["message"]
        assert loop.time() - began >= 1.9
        await asyncio.wait_for(draining, 5)
        assert live_calls(server) == 0
        snapshot = await server.app[REGISTRY].describe(client.call_id or "")
        assert snapshot["close_reason"] == "relay shutting down"
    finally:
        await client.close()


async def test_drain_ends_as_soon_as_the_last_call_hangs_up(relay_factory: RelayFactory) -> None:
    server = await relay_factory(drain_timeout=60.0)
    client, _ = await live_call(base_url(server))
    try:
        draining = begin_drain(server)
        await asyncio.sleep(0.2)
        assert not draining.done()
        assert await client.hangup() == 200
        await asyncio.wait_for(draining, 5)
        assert "error" not in client.types()
    finally:
        await client.close()


async def test_drain_a_second_begin_ends_the_calls_at_once(relay_factory: RelayFactory) -> None:
    server = await relay_factory(drain_timeout=60.0)
    client, _ = await live_call(base_url(server))
    try:
        draining = begin_drain(server)
        server.app[DRAIN].begin("test")  # a second Ctrl-C
        await asyncio.wait_for(draining, 5)
        error = await client.wait_for("error", timeout=5)
        assert error["error"]["code"] == "server_shutting_down"
    finally:
        await client.close()


async def test_drain_sideband_hears_why_the_call_ends(relay_factory: RelayFactory) -> None:
    server = await relay_factory(drain_timeout=0.0)
    url = base_url(server)
    client, _ = await live_call(url)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{url}/v1/realtime?call_id={client.call_id}") as ws:
            await asyncio.sleep(0.2)  # attached
            draining = begin_drain(server)
            events = []
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(message.data))
            assert [e["error"]["code"] for e in events if e["type"] == "error"] == [
                "server_shutting_down"]
            await asyncio.wait_for(draining, 5)
        error = await client.wait_for("error", timeout=5)
        assert error["error"]["code"] == "server_shutting_down"
    finally:
        await client.close()


async def test_drain_keeps_a_websocket_session_then_ends_it_with_an_error(
        relay_factory: RelayFactory) -> None:
    """A WebSocket session (openai-python's ``realtime.connect()``) is a live session too:
    it still works while the relay drains, then hears why it ends, and is closed 1001."""
    server = await relay_factory(drain_timeout=1.5)
    server_event: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-test") as client:
        async with client.realtime.connect(model="gpt-realtime") as connection:
            created = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            assert created["type"] == "session.created"
            loop = asyncio.get_running_loop()
            began = loop.time()
            draining = begin_drain(server)
            await refuses_new_calls(base_url(server))
            await connection.session.update(session={"type": "realtime",
                                                     "instructions": "Be brief."})
            updated = json.loads(await asyncio.wait_for(connection.recv_bytes(), 5))
            assert updated["type"] == "session.updated", updated
            assert not draining.done()
            error = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            server_event.validate_python(error)
            assert error["type"] == "error", error
            assert error["error"]["code"] == "server_shutting_down"
            assert loop.time() - began >= 1.4
            await asyncio.wait_for(draining, 5)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv_bytes(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert len(server.app[WS_SESSIONS]) == 0


async def test_drain_ends_as_soon_as_the_last_websocket_session_closes(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(drain_timeout=60.0)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-test") as client:
        async with client.realtime.connect(model="gpt-realtime") as connection:
            await asyncio.wait_for(connection.recv_bytes(), 10)  # session.created
            draining = begin_drain(server)
            await asyncio.sleep(0.2)
            assert not draining.done()
    await asyncio.wait_for(draining, 5)
    assert len(server.app[WS_SESSIONS]) == 0


async def test_drain_sigterm_drains_a_real_relay_then_it_exits_0(speech: bytes) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start("serve", "--port", str(port), "--ice-address", "127.0.0.1",
                    "--local-mode", "echo", "--drain-timeout", "3")
    try:
        await asyncio.to_thread(wait_healthy, url, process)
        client, source = await live_call(url)
        try:
            process.send_signal(signal.SIGTERM)
            for _ in range(100):  # the signal is handled at once, but asynchronously
                if (await get(url, "/readyz"))[0] == 503:
                    break
                await asyncio.sleep(0.05)
            await refuses_new_calls(url)
            await hears_speech(client, source, speech)
            assert process.poll() is None
            error = await client.wait_for("error", timeout=15)
            assert error["error"]["code"] == "server_shutting_down"
        finally:
            await client.close()
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        stop(process, signal.SIGKILL)
    log = process.stdout.read().decode() if process.stdout else ""
    assert "SIGTERM: draining, taking no new calls" in log
    assert "drain: ending the 1 calls and 0 WebSocket sessions still live" in log


def test_drain_sigint_with_no_calls_exits_0_at_once() -> None:
    port = free_port()
    process = start("serve", "--port", str(port), "--drain-timeout", "60")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        stop(process, signal.SIGKILL)
