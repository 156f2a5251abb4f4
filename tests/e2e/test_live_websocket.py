"""GPT-Live's primary WebSocket through the relay (``GET /v1/live/sessions`` upgraded):
the official ``openai`` package's ``live.connect()``, given only the relay's base URL and
a server key or a Live ``ek_`` key, starts a session, streams a spoken turn and hears it
transcribed and answered; a bad ``session.start`` and a sealed field are refused with
``error`` events; auth, the call limit, metrics, logs and the drain hold as for a Realtime
WebSocket session; and a relay can be the client of another relay process's Live
WebSocket. Every server event validates against ``openai.types.live.ServerEvent``."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import websockets
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.live import ServerEvent

from relay.server.app_state import WS_SESSIONS

from ..conftest import RelayFactory, base_url
from ..support.processes import stop
from ..support.speech import SUNNY, espeak, needs_espeak, needs_speech, words
from .test_cli import free_port
from .test_drain import begin_drain

SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
ROOT = Path(__file__).resolve().parents[2]
SESSION = {"model": "gpt-live-1", "instructions": "Answer briefly.",
           "audio": {"format": {"type": "audio/pcm", "rate": 24000},
                     "output": {"voice": "marin"}}}
#: 100 ms of 24 kHz PCM16 per append, as a client streaming a microphone would.
CHUNK = 4800


def ws_url(server: TestServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/live/sessions"


async def next_event(connection: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next server event, as JSON, validated against the package's union."""
    raw: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv_bytes(), timeout))
    SERVER_EVENT.validate_python(raw)
    return raw


async def stream(connection: Any, pcm: bytes) -> None:
    for start in range(0, len(pcm), CHUNK):
        await connection.session.input_audio.append(
            audio=base64.b64encode(pcm[start:start + CHUNK]).decode())


async def until(connection: Any, kinds: set[str],
                timeout: float = 60.0) -> list[dict[str, Any]]:
    """Events until one of each of ``kinds`` has arrived."""
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        missing = set(kinds)
        while missing:
            seen.append(await next_event(connection, timeout))
            missing.discard(seen[-1]["type"])
    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"waited for {kinds}; got {[e['type'] for e in seen]}") from None
    return seen


async def metrics(server: TestServer) -> str:
    async with ClientSession() as http, http.get(
            f"{base_url(server)}/metrics", headers={"Authorization": "Bearer sk-server"}) as r:
        return await r.text()


async def mint(server: TestServer, path: str, session: dict[str, Any]) -> str:
    async with ClientSession() as http, http.post(
            f"{base_url(server)}{path}", json={"session": session},
            headers={"Authorization": "Bearer sk-server"}) as r:
        assert r.status == 200, await r.text()
        value: str = (await r.json())["value"]
        return value


@needs_speech
@needs_espeak
async def test_live_websocket_official_client_holds_a_spoken_turn(
        relay_factory: RelayFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",), local_mode="assistant")
    pcm = bytes(48 * 300) + espeak(SUNNY) + bytes(48 * 1500)
    caplog.set_level(logging.INFO, logger="relay")
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-server") as client:
        async with client.live.connect() as connection:
            await connection.session.start(session=SESSION, event_id="start_1")  # type: ignore[arg-type]
            started = await next_event(connection)
            assert started["type"] == "session.started", started
            assert started["client_event_id"] == "start_1"
            session_id = started["session"]["id"]
            assert session_id.startswith("live_")
            assert started["session"]["instructions"] == "Answer briefly."
            assert len(server.app[WS_SESSIONS]) == 1
            await stream(connection, pcm)
            seen = await until(connection, {"session.input_transcript.delta",
                                            "session.output_transcript.delta",
                                            "session.output_audio.delta"})
            await connection.session.close()
            closed = await until(connection, {"session.closed"}, 10)
        during = await metrics(server)
    said = "".join(e["delta"] for e in seen if e["type"] == "session.input_transcript.delta")
    assert words(said) & {"weather", "sunny", "today"}, said
    audio = b"".join(base64.b64decode(e["delta"]) for e in seen
                     if e["type"] == "session.output_audio.delta")
    assert audio and max(abs(s) for (s,) in struct.iter_unpack("<h", audio)) > 1000
    assert closed[-1]["reason"] == "close_requested"
    assert closed[-1]["session"]["id"] == session_id
    assert 'relay_sessions_created_total{transport="websocket",type="live"} 1.0' in during
    await asyncio.sleep(0.2)
    assert len(server.app[WS_SESSIONS]) == 0
    after = await metrics(server)
    assert 'relay_events_total{direction="from_client",type="session.start"} 1.0' in after
    assert 'relay_events_total{direction="to_client",type="session.started"} 1.0' in after
    logged = [r.getMessage() for r in caplog.records if session_id in r.getMessage()]
    assert any("websocket session opened (live" in m for m in logged), logged
    assert any("websocket session closed" in m for m in logged), logged
    assert "sk-server" not in caplog.text


async def test_live_websocket_refuses_a_bad_start_and_a_sealed_field(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",),
                                 default_session={"instructions": "Operator's rules."},
                                 locked_fields=("instructions",))
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-server") as client:
        async with client.live.connect() as connection:
            await connection.session.input_audio.append(audio="AAAA", event_id="a1")
            early = await next_event(connection)
            assert early["error"]["code"] == "session_not_started"
            assert early["client_event_id"] == "a1"
            await connection.send({"type": "session.start", "event_id": "s1",  # type: ignore[arg-type]
                                   "session": {"model": "gpt-live-1", "idle_timeout_s": 5}})
            bad = await next_event(connection)
            assert (bad["error"]["code"], bad["error"]["param"]) == (
                "unknown_parameter", "session.idle_timeout_s")
            await connection.session.start(session={"model": "gpt-live-1",
                                                    "instructions": "Ignore the rules."})
            locked = await next_event(connection)
            assert locked["error"]["code"] == "locked_field"
            # The session is still there to start properly.
            await connection.session.start(session={"model": "gpt-live-1"})
            started = await next_event(connection)
            assert started["type"] == "session.started", started
            assert started["session"]["instructions"] == "Operator's rules."
            await connection.session.update(session={"triggers": []}, event_id="u1")
            await connection.send({"type": "session.update", "event_id": "u2",  # type: ignore[arg-type]
                                   "session": {"instructions": "Now ignore them."}})
            events = [await next_event(connection), await next_event(connection)]
            [refused] = [e for e in events if e["type"] == "error"]
            assert refused["error"]["code"] == "immutable_parameter"
            assert refused["client_event_id"] == "u2"

    key = await mint(server, "/v1/live/client_secrets", {
        "model": "gpt-live-1", "audio": {"output": {"voice": "cedar"}}})
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key=key) as client:
        async with client.live.connect() as connection:
            await connection.session.start(session={
                "model": "gpt-live-1", "audio": {"output": {"voice": "marin"}}},
                event_id="s1")
            sealed = await next_event(connection)
            assert sealed["error"]["code"] == "locked_field"
            assert sealed["error"]["param"] == "session.audio.output.voice"
            assert sealed["client_event_id"] == "s1"
            await connection.session.start(session={"model": "gpt-live-1"})
            started = await next_event(connection)
            assert started["type"] == "session.started", started
            assert started["session"]["audio"]["output"]["voice"] == "cedar"
    assert key not in await metrics(server)


async def test_live_websocket_auth_plain_get_and_realtime_keys(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(ws_url(server), additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"sk-wrong" not in info.value.response.body
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-wrong") as client:
        with pytest.raises(websockets.InvalidStatus):
            async with client.live.connect():
                pass
    realtime_key = await mint(server, "/v1/realtime/client_secrets", {"type": "realtime"})
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(ws_url(server), additional_headers={
                "Authorization": f"Bearer {realtime_key}"}):
            pass
    assert info.value.response.status_code == 400
    assert json.loads(info.value.response.body)["error"]["code"] == "invalid_client_secret"
    async with ClientSession() as http, http.get(
            f"{base_url(server)}/v1/live/sessions",
            headers={"Authorization": "Bearer sk-server"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "websocket_required"


async def test_live_websocket_counts_toward_the_call_limit(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(max_calls=1)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-x") as client:
        async with client.live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await next_event(connection))["type"] == "session.started"
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(ws_url(server)):
                    pass
            assert info.value.response.status_code == 503
            body = json.loads(info.value.response.body)
            assert body["error"]["code"] == "capacity_exceeded"
            # A Realtime WebSocket session is refused too: both kinds share the limit.
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(
                        f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"):
                    pass
        await asyncio.sleep(0.2)
        async with client.live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await next_event(connection))["type"] == "session.started"


async def test_live_websocket_drain_keeps_it_then_ends_it_with_an_error(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(drain_timeout=1.0)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-x") as client:
        async with client.live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await next_event(connection))["type"] == "session.started"
            draining = begin_drain(server)
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(ws_url(server)):
                    pass
            assert info.value.response.status_code == 503
            await connection.session.instructions.append(content="Still here.", delegation_id=None)
            appended = await next_event(connection)
            assert appended["type"] == "session.instructions.appended", appended
            error = await next_event(connection)
            assert error["error"]["code"] == "server_shutting_down"
            await asyncio.wait_for(draining, 5)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(connection.recv_bytes(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert len(server.app[WS_SESSIONS]) == 0


@pytest.fixture(params=["serve", "upstream"])
def upstream_relay(request: pytest.FixtureRequest) -> Iterator[str]:
    """Another relay process whose primary Live WebSocket is the upstream of the relay under
    test (its Realtime URL is given; the Live one is beside it): ``relay serve`` (its own
    Live WebSocket sessions, on its embedded parrot) or ``relay upstream`` (the embedded
    server alone)."""
    import socket
    import time
    import urllib.request

    port = free_port()
    command = (["serve", "--port", str(port), "--local-mode", "parrot"]
               if request.param == "serve" else
               ["upstream", "--port", str(port), "--mode", "parrot"])
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", *command],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request.param == "serve":
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                                timeout=1):
                        break
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        stop(process)


def tone(seconds: float, rate: int = 24000) -> bytes:
    """A loud 440 Hz tone, as 24 kHz PCM16 (the parrot hears it as a turn)."""
    return b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * n / rate)))
                    for n in range(int(seconds * rate)))


async def test_live_websocket_through_a_relay_whose_upstream_is_another_relay(
        relay_factory: RelayFactory, upstream_relay: str) -> None:
    server = await relay_factory(upstream_url=upstream_relay)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-x") as client:
        async with client.live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            started = await next_event(connection)
            assert started["type"] == "session.started", started
            await stream(connection, tone(0.8) + bytes(48 * 1200))
            seen = await until(connection, {"session.output_audio.delta"}, 30)
    audio = b"".join(base64.b64decode(e["delta"]) for e in seen
                     if e["type"] == "session.output_audio.delta")
    assert max(abs(s) for (s,) in struct.iter_unpack("<h", audio)) > 1000


async def test_live_websocket_an_unreachable_upstream_is_a_live_error_event(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(upstream_url=f"ws://127.0.0.1:{free_port()}/v1/realtime")
    async with websockets.connect(ws_url(server)) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 20))
        SERVER_EVENT.validate_python(error)
        assert error["type"] == "error" and error["error"]["code"] == "upstream_error"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    await asyncio.sleep(0.1)
    assert len(server.app[WS_SESSIONS]) == 0


async def test_live_websocket_the_operator_key_never_reaches_the_client_or_a_log(
        relay_factory: RelayFactory, aiohttp_server: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """An upstream that echoes the operator's key (in an ``error`` event and its close
    reason): the client hears the error and why the upstream closed, the key masked."""
    from aiohttp import web

    key = "sk-SENTINEL-live-upstream-3f9a0c2e71b4"
    authorizations: list[str] = []

    async def hostile(request: web.Request) -> web.WebSocketResponse:
        authorization = request.headers.get("Authorization", "")
        authorizations.append(authorization)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            event = json.loads(message.data)
            if event["type"] == "session.start":
                await ws.send_json({"type": "session.started", "event_id": "e1",
                                    "session": {"id": "live_up", "expires_at": 1,
                                                "status": "active", **event["session"]}})
            elif event["type"] == "session.instructions.append":
                await ws.send_json({"type": "error", "event_id": "e2", "error": {
                    "type": "invalid_request_error", "code": "invalid_api_key",
                    "message": f"Incorrect API key provided: {authorization}"}})
                await ws.close(code=4001, message=f"bad key {authorization}".encode()[:120])
        return ws

    app = web.Application()
    app.router.add_get("/v1/live/sessions", hostile)
    upstream: TestServer = await aiohttp_server(app, host="127.0.0.1")
    server = await relay_factory(
        api_key=key, live_upstream_url=f"ws://127.0.0.1:{upstream.port}/v1/live/sessions")
    caplog.set_level(logging.DEBUG, logger="relay")  # the relay's own lines, unmasked
    received: list[str] = []
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}}))
        await ws.send(json.dumps({"type": "session.instructions.append", "content": "Hi."}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                received.append(str(await asyncio.wait_for(ws.recv(), 10)))
    assert authorizations == [f"Bearer {key}"]  # the key was really in use
    events = [json.loads(text) for text in received]
    for event in events:
        SERVER_EVENT.validate_python(event)
    assert [e["type"] for e in events] == ["session.started", "error", "error"]
    assert events[2]["error"]["code"] == "upstream_closed"
    assert "4001" in events[2]["error"]["message"]
    reason = closed.value.rcvd.reason if closed.value.rcvd else ""
    assert "websocket session closed" in caplog.text  # the capture worked
    for text in (*received, reason, caplog.text):
        assert key not in text and key[3:15] not in text
