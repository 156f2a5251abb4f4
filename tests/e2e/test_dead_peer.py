"""A peer that vanishes without a goodbye: once no path is up and no resume has come within
the grace period, its call ends, and its upstream session with it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.server.app import REGISTRY, create_app

from ..conftest import loopback_settings, write_wav
from ..support.recording import record_upstream

ROOT = Path(__file__).resolve().parent.parent.parent
PEER_TIMEOUT = 2.0
#: How long the call then waits for its client to resume it.
GRACE = 1.0
#: The watchdog polls four times a timeout at most, and closing takes a moment.
SLACK = 1.5


def tone(seconds: float) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.2 * 32767 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def test_dead_peer_killed_client_ends_its_call_and_upstream(aiohttp_server,
                                                                  tmp_path: Path) -> None:
    app: web.Application = create_app(loopback_settings(peer_timeout=PEER_TIMEOUT,
                                                            resume_grace=GRACE))
    recorded = record_upstream(app)
    relay: TestServer = await aiohttp_server(app, host="127.0.0.1")
    mic = tmp_path / "long.wav"
    write_wav(mic, tone(60))
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "call", "--url", f"http://127.0.0.1:{relay.port}",
        "--input", str(mic), "--output", str(tmp_path / "reply.wav"),
        "--ice-address", "127.0.0.1", "--timeout", "120",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_until(lambda: len(relay.app[REGISTRY]) == 1, 20, "the call exists")
        [call] = list(relay.app[REGISTRY])
        await wait_until(lambda: call.pc.connectionState == "connected", 20, "it connects")
        # Mid-call: the peer's audio is reaching the upstream.
        [connector] = recorded
        [upstream] = connector.sockets
        await wait_until(lambda: len(upstream.audio) > 24000 * 2, 20, "audio flows")
        os.kill(client.pid, signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.wait_for(client.wait(), 10)
        await wait_until(lambda: call.closed, PEER_TIMEOUT + GRACE + SLACK + 5,
                         "the call closes")
        ended = time.monotonic() - killed
    finally:
        if client.returncode is None:
            client.kill()
            await asyncio.wait_for(client.wait(), 10)
    assert PEER_TIMEOUT + GRACE - 0.3 <= ended <= PEER_TIMEOUT + GRACE + SLACK, ended
    assert call.close_reason is not None and call.close_reason.startswith("peer went silent")
    assert call.close_reason.endswith(f"no resume within {GRACE:g} s")
    # The slot is free, and the upstream session is closed, not left for someone to pay.
    assert len(relay.app[REGISTRY]) == 0
    assert upstream.closed_at is not None
    assert upstream.closed_at - killed <= PEER_TIMEOUT + GRACE + SLACK
    assert upstream.close_code is not None  # the real socket's, once closed


async def test_dead_peer_live_quiet_call_is_not_ended(relay_factory, make_client) -> None:
    # A peer that only listens (its microphone silent) still sends RTP, RTCP and checks.
    relay = await relay_factory(peer_timeout=1.0)
    client = make_client(server=relay)
    await client.connect()
    await asyncio.sleep(3.0)
    [call] = list(relay.app[REGISTRY])
    assert not call.closed and call.stats()["peer_datagrams"] > 100
