"""Per-call limits over real sockets: the longest duration, and a data-channel flood."""

from __future__ import annotations

import asyncio

from ..conftest import live_calls


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_call_limits_a_call_is_warned_then_ended_at_its_longest_duration(
        relay_factory, make_client) -> None:
    server = await relay_factory(max_call_seconds=2.0)
    client = make_client(server=server)
    await client.connect()
    error = await client.wait_for("error", timeout=10)
    assert error["error"]["code"] == "call_duration_exceeded"
    assert live_calls(server) == 1  # warned first, then ended
    await wait_until(lambda: live_calls(server) == 0)


async def test_call_limits_a_data_channel_flood_ends_that_call_only(
        relay_factory, make_client) -> None:
    server = await relay_factory(client_message_rate=5)
    flooder, quiet = make_client(server=server), make_client(server=server)
    await flooder.connect()
    await quiet.connect()
    await flooder.wait_for("session.created")
    for _ in range(1000):
        flooder.send({"type": "input_audio_buffer.clear"})
    error = await flooder.wait_for("error", timeout=10)
    assert error["error"]["code"] == "rate_limit_exceeded"
    await wait_until(lambda: live_calls(server) == 1)
    quiet.send({"type": "input_audio_buffer.clear"})
    assert (await quiet.wait_for("session.created"))["type"] == "session.created"
