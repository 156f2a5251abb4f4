"""The official openai-agents package (``agents.realtime``) on a live WebRTC call, as an
application server runs it: ``RealtimeRunner`` attached to the call's sideband by
``model_config`` url and headers alone, an aiortc client on the call, and the embedded
local Realtime server, run here, as the upstream, so the test sees every client event that
reaches the model.

What openai-agents-python does on the sideband, read from ``agents/realtime/openai_realtime.py``
(0.24) and checked here: it tracks playback from ``response.output_audio.delta``, which a
sideband never gets, so its tracker stays empty. On ``input_audio_buffer.speech_started``
it then sends nothing (the whole barge-in branch is skipped), and ``session.interrupt()``
finds no item playing, sends no ``conversation.item.truncate``, and only cancels the
response (``response.cancel``) when the session's ``interrupt_response`` is off. The one
truncation that reaches the upstream is the relay's, cut at what the client heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession
from aiohttp.test_utils import TestServer

from relay.client import CallClient
from relay.protocol.events import Event
from relay.server.app import REGISTRY
from relay.upstream.local import LocalRealtimeServer

from ..conftest import RelayFactory

#: Fast turn detection: the parrot answers 300 ms after the user stops.
TURN_DETECTION = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200,
                  "interrupt_response": True}
SESSION = {"type": "realtime", "audio": {"input": {"turn_detection": TURN_DETECTION}}}
#: An RMS above this in a 20 ms frame is reply audio (the relay sends digital silence).
AUDIBLE = 300.0


class Upstream:
    """The embedded local server, recording every client event its sessions receive."""

    def __init__(self) -> None:
        self.received: list[Event] = []
        self.server = LocalRealtimeServer(observer=self._observe)

    def _observe(self, session_id: str, event: Event) -> None:
        self.received.append(event)

    def of_type(self, kind: str) -> list[Event]:
        return [event for event in self.received if event["type"] == kind]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    recorded = Upstream()
    async with recorded.server:
        yield recorded


@pytest.fixture
async def relay_on_upstream(relay_factory: RelayFactory, upstream: Upstream) -> TestServer:
    return await relay_factory(upstream_url=upstream.server.url)


def weather_agent(calls: list[str]) -> RealtimeAgent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """Today's weather in a city.

        Args:
            city: The city's name.
        """
        calls.append(city)
        return f"Sunny in {city}, 21 C"

    return RealtimeAgent(name="Weather", instructions="Use get_weather.", tools=[get_weather])


@contextlib.asynccontextmanager
async def attached(agent: RealtimeAgent[Any], server: TestServer, call_id: str
                   ) -> AsyncIterator[RealtimeSession]:
    """``agent`` on the call's sideband, its events consumed as an application would."""
    session = await RealtimeRunner(agent).run(model_config={
        "url": f"ws://127.0.0.1:{server.port}/v1/realtime?call_id={call_id}",
        "headers": {},  # open mode: no key (explicit headers: the SDK adds none of its own)
        "initial_model_settings": {"turn_detection": TURN_DETECTION},  # type: ignore[typeddict-item]
    })

    async def consume() -> None:
        async for _ in session:
            pass

    async with session:
        task = asyncio.get_running_loop().create_task(consume())
        try:
            yield session
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def loudest_frame(pcm: bytes) -> float:
    x = np.frombuffer(pcm[: len(pcm) // 960 * 960], dtype="<i2").astype(float).reshape(-1, 480)
    return float(np.sqrt((x**2).mean(axis=1)).max()) if len(x) else 0.0


async def test_agents_python_tool_runs_and_its_answer_is_heard(
        relay_on_upstream: TestServer, make_client: Any, upstream: Upstream) -> None:
    client: CallClient = make_client(server=relay_on_upstream, session=SESSION)
    await client.connect()
    await client.wait_for("session.created")
    assert client.call_id is not None
    calls: list[str] = []
    async with attached(weather_agent(calls), relay_on_upstream, client.call_id):
        # The agent's configuration reaches the client as the session's change.
        updated = await client.wait_for("session.updated")
        assert [t["name"] for t in updated["session"]["tools"]] == ["get_weather"]
        client.say("what does get_weather say for Paris?")
        stopped = await client.wait_for("output_audio_buffer.stopped", timeout=20)
        await asyncio.sleep(0.3)  # the reply's last frames are in the jitter buffer
        # The tool ran here, once; its output went upstream and came back spoken.
        assert calls == ["example"]  # the local server's placeholder for a string
        [output] = [e["item"] for e in upstream.of_type("conversation.item.create")
                    if e["item"]["type"] == "function_call_output"]
        assert output["output"] == "Sunny in example, 21 C"
        transcript = await client.wait_for(
            "response.output_audio_transcript.done",
            lambda e: e["response_id"] == stopped["response_id"])
        assert transcript["transcript"] == "I used get_weather: Sunny in example, 21 C"
        assert loudest_frame(bytes(client.received)) > AUDIBLE


async def test_agents_python_barge_in_truncates_once_and_exactly(
        relay_on_upstream: TestServer, make_client: Any, upstream: Upstream, speech: bytes,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.protocol.realtime.call_core")
    client: CallClient = make_client(server=relay_on_upstream, session=SESSION)
    await client.connect()
    await client.wait_for("session.created")
    assert client.call_id is not None
    async with attached(weather_agent([]), relay_on_upstream, client.call_id) as session:
        await client.wait_for("session.updated")
        client.source.play(speech)  # type: ignore[attr-defined]
        started = await client.wait_for("output_audio_buffer.started", timeout=20)
        await asyncio.sleep(0.5)  # the parrot's reply has played half a second
        client.source.play(speech)  # type: ignore[attr-defined]  # the user talks over it
        cleared = await client.wait_for("output_audio_buffer.cleared", timeout=10)
        assert cleared["response_id"] == started["response_id"]
        truncated = await client.wait_for("conversation.item.truncated", timeout=10)
        # The agent's own interrupt finds nothing playing: it truncates nothing either.
        await session.interrupt()
        await asyncio.sleep(0.5)  # time for any controller's truncation to arrive
    [sent] = upstream.of_type("conversation.item.truncate")
    call = relay_on_upstream.app[REGISTRY].get(client.call_id)
    [barge] = call.stats()["barge_ins"]
    assert barge["reason"] == "speech_started"
    assert barge["truncated"] == [(sent["item_id"], sent["audio_end_ms"])]
    assert sent["audio_end_ms"] == truncated["audio_end_ms"]
    assert 300 <= sent["audio_end_ms"] <= 1500
    # None came from the agent: the relay would have logged dropping it.
    assert not [r for r in caplog.records if "truncation of" in r.getMessage()]
