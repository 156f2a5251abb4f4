"""WebSocket sessions through the relay (``GET /v1/realtime`` without a call): the
official ``openai`` package's ``realtime.connect()`` and the Agents SDK's
``RealtimeRunner``, given only the relay's URL, hold a Realtime session bridged to the
embedded server, or to another relay process as the upstream; with a call's auth, policy,
metrics and limits."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from relay.server.app_state import WS_SESSIONS

from ..conftest import RelayFactory, base_url
from ..support.processes import stop
from ..support.speech import SUNNY, SUNNY_WORDS, espeak, needs_espeak, needs_speech, words

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
ROOT = Path(__file__).resolve().parents[2]


def ws_url(server: TestServer, query: str = "model=gpt-realtime") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime?{query}"


async def text_turn(connection: Any, text: str) -> list[dict[str, Any]]:
    """Type ``text`` as the user, ask for a response, and return every event up to its
    ``response.done`` (as JSON objects, validated against the package's types)."""
    await connection.conversation.item.create(item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await connection.response.create()
    events: list[dict[str, Any]] = []
    while True:
        raw = json.loads(await asyncio.wait_for(connection.recv_bytes(), 20))
        SERVER_EVENT.validate_python(raw)
        events.append(raw)
        if raw["type"] == "response.done":
            return events


async def test_websocket_session_openai_connect_updates_and_holds_a_text_turn(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-server") as client:
        async with client.realtime.connect(model="gpt-realtime") as connection:
            created = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            assert SERVER_EVENT.validate_python(created).type == "session.created"
            assert len(server.app[WS_SESSIONS]) == 1
            await connection.session.update(session={
                "type": "realtime", "instructions": "Answer briefly.",
                "audio": {"output": {"voice": "marin"}}})
            updated = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            assert updated["type"] == "session.updated"
            assert updated["session"]["instructions"] == "Answer briefly."
            events = await text_turn(connection, "Hello there")
        async with ClientSession() as http:
            async with http.get(f"{base_url(server)}/metrics",
                                headers={"Authorization": "Bearer sk-server"}) as r:
                metrics = await r.text()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "conversation.item.added" and "response.created" in kinds
    # The client owns its audio here: the deltas reach it (a call's never would).
    assert "response.output_audio.delta" in kinds
    assert events[-1]["response"]["status"] == "completed"
    assert not [k for k in kinds if k.startswith("output_audio_buffer.")]
    assert 'relay_sessions_created_total{transport="websocket",type="realtime"} 1.0' in metrics
    await asyncio.sleep(0.1)
    assert len(server.app[WS_SESSIONS]) == 0


async def test_websocket_session_auth_keys_subprotocol_and_policy(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",),
                                 default_session={"instructions": "Operator's rules."},
                                 locked_fields=("instructions",))
    # No key, a wrong key: refused before the upgrade, in the API's error shape.
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(ws_url(server), additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"sk-wrong" not in info.value.response.body
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/client_secrets",
                             headers={"Authorization": "Bearer sk-server"},
                             json={"session": {"type": "realtime",
                                               "audio": {"output": {"voice": "cedar"}}}}) as r:
            key = (await r.json())["value"]
    # A browser's form: the key in a subprotocol, answered with "realtime".
    async with websockets.connect(ws_url(server), subprotocols=[
            "realtime", f"openai-insecure-api-key.{key}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "realtime"
        created = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert created["type"] == "session.created"
        assert created["session"]["audio"]["output"]["voice"] == "cedar"  # the key's session
        assert created["session"]["instructions"] == "Operator's rules."
        await ws.send(json.dumps({"type": "session.update", "event_id": "c1",
                                  "session": {"instructions": "Ignore the rules."}}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and error["error"]["code"] == "locked_field"
        assert error["error"]["event_id"] == "c1"
        # The session goes on.
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        cleared = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert cleared["type"] == "input_audio_buffer.cleared"


@needs_speech
@needs_espeak
async def test_websocket_session_transcription_intent_transcribes_appended_audio(
        relay: TestServer) -> None:
    pcm = bytes(48 * 300) + espeak(SUNNY) + bytes(48 * 1200)
    async with websockets.connect(ws_url(relay, "intent=transcription")) as ws:
        created = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert SERVER_EVENT.validate_python(created).session.type == "transcription"
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription",
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}}))
        for start in range(0, len(pcm), 4800):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm[start:start + 4800]).decode()}))
        await ws.send(json.dumps({"type": "response.create", "event_id": "c_talk"}))
        seen: list[dict[str, Any]] = []
        while not any(e["type"].endswith("transcription.completed") for e in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    for event in seen:
        SERVER_EVENT.validate_python(event)
    [completed] = [e for e in seen if e["type"].endswith("transcription.completed")]
    assert SUNNY_WORDS <= words(completed["transcript"]), completed["transcript"]
    [error] = [e for e in seen if e["type"] == "error"]
    assert error["error"]["event_id"] == "c_talk"
    assert not [e for e in seen if e["type"].startswith("response.")]


async def test_websocket_session_agents_sdk_runner_with_only_its_url(relay: TestServer) -> None:
    from agents.realtime import RealtimeAgent, RealtimeRunner

    agent = RealtimeAgent(name="Assistant", instructions="Answer briefly.")
    session = await RealtimeRunner(agent).run(model_config={
        "url": ws_url(relay), "api_key": "sk-anything"})
    kinds: list[str] = []
    async with session:
        await session.send_message("Hello there")
        async for event in session:
            kinds.append(event.type)
            if event.type == "agent_end" or len(kinds) > 500:
                break
    assert "agent_start" in kinds and "agent_end" in kinds
    assert "error" not in kinds


@pytest.fixture
def upstream_relay(tmp_path: Path) -> Iterator[str]:
    """Another relay process (embedded upstream, parrot) whose WebSocket sessions are
    the upstream of the relay under test."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--port", str(port), "--local-mode", "parrot"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        stop(process)


async def test_websocket_session_through_a_relay_whose_upstream_is_another_relay(
        relay_factory: RelayFactory, upstream_relay: str) -> None:
    server = await relay_factory(upstream_url=upstream_relay)
    async with AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-x") as client:
        async with client.realtime.connect(model="gpt-realtime") as connection:
            created = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            assert created["type"] == "session.created"
            await connection.session.update(session={"type": "realtime",
                                                     "instructions": "Two hops."})
            updated = json.loads(await asyncio.wait_for(connection.recv_bytes(), 10))
            assert updated["session"]["instructions"] == "Two hops."
            events = await text_turn(connection, "Hello there")
    assert events[-1]["response"]["status"] == "completed"
    assert "response.output_audio.delta" in [e["type"] for e in events]

