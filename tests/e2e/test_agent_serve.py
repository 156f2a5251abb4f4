"""``--agent``: the relay serves an Agents SDK agent on every call, over real sockets. The
agent works from the client's first message; an agent that fails or hangs is reported to
the client (``agent_error``) and never takes the call's audio down."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from relay.client import CallClient
from relay.server.app import REGISTRY

from ..conftest import RelayFactory, live_calls

SESSION = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200}}}}
BROKEN = "tests.support.agents:"


def agent_errors(client: CallClient) -> list[dict[str, Any]]:
    return [e for _, e in client.events
            if e["type"] == "error" and e["error"]["code"] == "agent_error"]


def index(client: CallClient, event: dict[str, Any]) -> int:
    return next(i for i, (_, e) in enumerate(client.events) if e is event)


async def call_goes_on(client: CallClient, server: TestServer, speech: bytes) -> None:
    """The call's audio still flows and a spoken turn is still answered."""
    assert client.call_id is not None
    call = server.app[REGISTRY].get(client.call_id)
    frames = call.stats()["frames_out"]
    after = len(client.events)
    client.source.play(speech)  # type: ignore[attr-defined]
    committed = await client.wait_for("input_audio_buffer.committed", timeout=10, after=after)
    created = await client.wait_for("response.created", timeout=10, after=index(client, committed))
    await client.wait_for("output_audio_buffer.stopped",
                          lambda e: e["response_id"] == created["response"]["id"], timeout=30)
    assert call.stats()["frames_out"] > frames + 25
    assert live_calls(server) == 1


async def test_agent_served_example_answers_the_first_message_with_its_tool(
        relay_factory: RelayFactory, make_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    server = await relay_factory(agent="examples.weather_agent:agent")
    client: CallClient = make_client(server=server)
    await client.connect()
    client.say("what does get_weather say for Paris?")  # at once: it waits for the agent
    stopped = await client.wait_for("output_audio_buffer.stopped", timeout=20)
    transcript = await client.wait_for(
        "response.output_audio_transcript.done",
        lambda e: e["response_id"] == stopped["response_id"])
    assert transcript["transcript"] == (
        "I used get_weather: The weather in example is mild and dry, 17 C.")
    kinds = client.types()
    assert kinds.index("session.updated") < kinds.index("conversation.item.added")
    assert client.call_id is not None
    call = server.app[REGISTRY].get(client.call_id)
    assert call.stats()["sidebands"] == 1
    # Hanging up closes the agent's sideband and awaits its task.
    assert await client.hangup() == 200
    assert call.closed and call.stats()["sidebands"] == 0
    assert not agent_errors(client)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_agent_tool_that_raises_is_reported_and_the_call_goes_on(
        relay_factory: RelayFactory, make_client: Any, speech: bytes) -> None:
    server = await relay_factory(agent=BROKEN + "raising_tool_agent")
    client: CallClient = make_client(server=server, session=SESSION)
    await client.connect()
    client.say("what does get_weather say?")
    error = await client.wait_for("error", lambda e: e["error"]["code"] == "agent_error")
    assert error["error"]["message"] == (
        "The call's agent stopped (RuntimeError); the call goes on without it.")
    await call_goes_on(client, server, speech)
    assert len(agent_errors(client)) == 1


@pytest.mark.parametrize("factory", ["raising_factory", "not_an_agent"])
async def test_agent_factory_that_fails_is_reported_and_the_call_goes_on(
        relay_factory: RelayFactory, make_client: Any, speech: bytes, factory: str) -> None:
    server = await relay_factory(agent=BROKEN + factory)
    client: CallClient = make_client(server=server, session=SESSION)
    await client.connect()
    client.say("hello")  # held for the agent, then let through without it
    error = await client.wait_for("error", lambda e: e["error"]["code"] == "agent_error")
    assert error["error"]["message"].startswith("The call's agent could not start (")
    await client.wait_for("response.done", timeout=10)
    await call_goes_on(client, server, speech)


async def test_agent_that_hangs_is_given_up_in_time(relay_factory: RelayFactory,
                                                    make_client: Any, speech: bytes) -> None:
    server = await relay_factory(agent=BROKEN + "hanging_factory", agent_start_timeout=1.0)
    client: CallClient = make_client(server=server, session=SESSION)
    await client.connect()
    client.say("hello")
    error = await client.wait_for("error", lambda e: e["error"]["code"] == "agent_error")
    assert error["error"]["message"] == (
        "The call's agent did not start within 1 s; the call goes on without it.")
    await client.wait_for("response.done", timeout=10)
    await call_goes_on(client, server, speech)


async def test_agent_still_starting_ends_with_its_call(
        relay_factory: RelayFactory, make_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    server = await relay_factory(agent=BROKEN + "hanging_factory", agent_start_timeout=60)
    client: CallClient = make_client(server=server)
    await client.connect()
    assert client.call_id is not None
    call = server.app[REGISTRY].get(client.call_id)
    began = time.monotonic()
    assert await client.hangup() == 200
    assert call.closed and time.monotonic() - began < 5
    await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "relay.server.agent"
                and r.levelno >= logging.WARNING]
