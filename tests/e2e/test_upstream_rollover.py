"""A call outlives its upstream session: the embedded server's session limit set low (the
relay rolls the call over to a new session), and an embedded server run as its own process,
killed mid-call and started again. The conversation comes through, the client hears of it
once (``relay.upstream.restored``), and a later turn still reaches an earlier turn's item."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from aiohttp.test_utils import TestServer
from openai.types.realtime import RealtimeServerEvent

from relay.client import CallClient
from relay.protocol.realtime.call_core import RESTORED_EVENT
from relay.server.app import REGISTRY

from ..conftest import RelayFactory
from ..support.processes import stop

SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
CODE_WORD = "the code word is pineapple"


def transcript_of(client: CallClient, after: int) -> str:
    return " ".join(e.get("transcript", "") for _, e in client.events[after:]
                    if e["type"] == "response.output_audio_transcript.done")


async def say_and_hear(client: CallClient, text: str) -> tuple[str, str]:
    """Type ``text``; return the user item's id and the reply's transcript."""
    mark = len(client.events)
    client.say(text)
    added = await client.wait_for("conversation.item.added", after=mark)
    await client.wait_for("response.done", after=mark)
    return added["item"]["id"], transcript_of(client, mark)


async def refer_back(client: CallClient, item_id: str) -> str:
    """A turn that answers only an earlier turn's item (``item_reference``)."""
    mark = len(client.events)
    client.send({"type": "response.create", "response": {
        "input": [{"type": "item_reference", "id": item_id}]}})
    done = await client.wait_for("response.done", after=mark)
    assert done["response"]["status"] == "completed", done
    return transcript_of(client, mark)


async def test_call_rolls_over_when_the_upstream_session_expires(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server: TestServer = await relay_factory(local_session_seconds=4.0, local_mode="assistant")
    client = make_client(server=server)
    await client.connect()
    item_id, heard = await say_and_hear(client, CODE_WORD)
    assert CODE_WORD in heard
    # Past the session's limit: the relay opens a new one and restores it.
    restored = await client.wait_for(RESTORED_EVENT, timeout=15)
    assert restored["reason"] == "session_expired"
    assert item_id in restored["items_restored"] and restored["items_lost"] == []
    assert "error" not in client.types()  # session_expired is the relay's to handle
    assert CODE_WORD in await refer_back(client, item_id)
    [call] = list(server.app[REGISTRY])
    assert call.stats()["upstream_restores"] == 1
    # Every event the client got is a Realtime server event, except the relay's own.
    for _, event in client.events:
        if event["type"] != RESTORED_EVENT:
            SERVER_EVENT.validate_python(event)


async def test_call_rolls_over_before_the_upstream_limit_at_a_quiet_moment(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server: TestServer = await relay_factory(local_session_seconds=30.0,
                                             upstream_session_seconds=3.0,
                                             local_mode="assistant")
    client = make_client(server=server)
    await client.connect()
    item_id, heard = await say_and_hear(client, CODE_WORD)
    assert CODE_WORD in heard
    restored = await client.wait_for(RESTORED_EVENT, timeout=15)
    assert restored["reason"] == "session_rollover"
    assert item_id in restored["items_restored"]
    assert restored["uplink_ms_dropped"] == 0  # the new session was open before the switch
    assert "error" not in client.types()
    assert CODE_WORD in await refer_back(client, item_id)
    [call] = list(server.app[REGISTRY])
    assert call.stats()["upstream_restores"] >= 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_upstream(port: int) -> subprocess.Popen[bytes]:
    """``relay upstream`` (the embedded server on its own) on ``port``, once it listens."""
    argv = [sys.executable, "-m", "relay", "upstream", "--port", str(port),
            "--mode", "assistant"]
    process = await asyncio.to_thread(subprocess.Popen, argv, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert b"ws://" in line, line
    return process


@pytest.mark.slow
async def test_call_survives_its_upstream_process_killed_and_restarted(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    port = free_port()
    upstream = await start_upstream(port)
    try:
        server = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                     upstream_reconnect_seconds=20.0)
        client = make_client(server=server)
        await client.connect()
        item_id, heard = await say_and_hear(client, CODE_WORD)
        assert CODE_WORD in heard
        mark = len(client.events)
        upstream.kill()  # no goodbye: the socket just dies
        upstream.wait()
        killed_at = time.monotonic()
        await asyncio.sleep(1.0)
        upstream = await start_upstream(port)
        restored = await client.wait_for(RESTORED_EVENT, after=mark, timeout=20)
        took = time.monotonic() - killed_at
        assert item_id in restored["items_restored"]
        assert [t for t in client.types()[mark:] if t == "error"] == []
        assert CODE_WORD in await refer_back(client, item_id)
        print(f"\nupstream killed → restored in {took:.2f} s (down "
              f"{restored['seconds_without_upstream']} s, uplink dropped "
              f"{restored['uplink_ms_dropped']} ms)")
    finally:
        stop(upstream)
