"""The neighbour test: one call floods its data channel with garbage while another call's
audio keeps flowing both ways at 50 frames a second with no stall over 100 ms.

Call B speaks a tone without pause; the embedded upstream, in echo mode, returns every
chunk at once, so B's downlink carries audio the whole time. The flood comes from another
process (tests/support/flooder.py), call after call: the relay ends each flooding call,
never B. Over the flood's window the test measures what the relay decoded of B's uplink
(its counters, sampled every 10 ms) and when B's downlink RTP packets arrived (before any
jitter buffer).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from relay.client import CallClient, PcmSource
from relay.server.app import REGISTRY
from relay.server.run import GC_THRESHOLDS

from ..conftest import LOOPBACK, RelayFactory, base_url
from ..support.netlab import ROOT
from ..support.rtp import record_rtp

FLOOD_SECONDS = 6.0
#: Bounds of the flood, besides its time.
MAX_MESSAGES = 200_000
#: The relay's data-channel message limit in this test, and the flood's oversize messages.
MAX_MESSAGE_BYTES = 16 * 1024
OVERSIZE_BYTES = 20 * 1024
#: Longest stall of either direction allowed.
MAX_GAP = 0.100


def tone(seconds: float) -> bytes:
    """A 440 Hz tone, 24 kHz mono PCM16."""
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


@pytest.fixture
def served_gc() -> Iterator[None]:
    """The garbage collector as ``relay serve`` sets it (relay/server/run.py): what was
    built before serving is frozen out of collections, young ones are rarer. Without it a
    full collection of everything the test run has imported stalls the loop for 60-120 ms,
    a pause the relay itself does not have."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.usefixtures("served_gc")
async def test_neighbour_flood_leaves_the_next_call_at_50_frames_a_second(
        relay_factory: RelayFactory) -> None:
    relay = await relay_factory(local_mode="echo", client_max_message_bytes=MAX_MESSAGE_BYTES)
    speaker = CallClient(base_url(relay), PcmSource(tone(FLOOD_SECONDS + 15)),
                         ice_addresses=LOOPBACK)
    try:
        await _flood_beside(relay, speaker)
    finally:
        await speaker.close()


async def _flood_beside(relay: TestServer, speaker: CallClient) -> None:
    arrivals = record_rtp(speaker.pc)
    await speaker.connect()
    await speaker.wait_for("session.created")
    [call] = list(relay.app[REGISTRY])
    await _until(lambda: call.stats()["audio_frames_out"] > 25, 10)  # the echo flows
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.flooder", base_url(relay), str(FLOOD_SECONDS),
        str(MAX_MESSAGES), str(OVERSIZE_BYTES), cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert flooder.stdout is not None
    try:
        assert await asyncio.wait_for(flooder.stdout.readline(), 30) == b"flooding\n"
        start, before = time.monotonic(), call.stats()
        cpu0, waited0 = time.process_time(), _run_queue_wait()
        uplink = asyncio.create_task(_sample_uplink(call))
        line = await asyncio.wait_for(flooder.stdout.readline(), FLOOD_SECONDS + 20)
        end, after = time.monotonic(), call.stats()
        cpu, waited = time.process_time() - cpu0, _run_queue_wait() - waited0
        uplink.cancel()
        samples = await asyncio.gather(uplink, return_exceptions=True)
    finally:
        if flooder.returncode is None:
            flooder.kill()
        await flooder.wait()
    flood = json.loads(line)
    window = end - start
    up_rate = (after["uplink_decoded"] - before["uplink_decoded"]) / window
    up_gap = _longest_unchanged(uplink_samples := list(_samples(samples)), start, end)
    down = [p.at for p in arrivals.packets if start <= p.at <= end]
    down_rate = len(down) / window
    down_gap = float(np.max(np.diff([start, *down, end])))
    echoed = (after["audio_frames_out"] - before["audio_frames_out"]) / window
    print(f"neighbour: {window:.1f} s of flood ({sum(flood['sent'].values())} messages, "
          f"{len(flood['calls'])} calls, errors {flood['errors']}): B's uplink "
          f"{up_rate:.1f} frames/s decoded, longest gap {up_gap * 1000:.0f} ms "
          f"({len(uplink_samples)} samples); downlink {down_rate:.1f} packets/s, longest gap "
          f"{down_gap * 1000:.0f} ms, {echoed:.1f} audio frames/s; this process (the relay "
          f"and B) used {cpu / window:.0%} of a core and waited {waited * 1000:.0f} ms for one")
    # The flood was a flood: every kind of garbage, each answered with errors; a call the
    # relay ended was ended for its flood (only the flooding calls end).
    assert window >= FLOOD_SECONDS - 0.5
    assert set(flood["sent"]) >= {"valid", "invalid_json", "binary", "unknown_type",
                                  "oversize"}, flood["sent"]
    assert {"rate_limit_exceeded", "message_too_large", "invalid_json"} <= set(
        flood["errors"]), flood
    async with ClientSession() as http:
        for flooding in flood["calls"]:
            async with http.get(f"{base_url(relay)}/v1/realtime/calls/{flooding['id']}") as r:
                described = await r.json()
            if flooding["ended_by_relay"]:
                assert described["close_reason"] == "client flooded the call", described
    # B went on, both ways at 50 frames a second, with no stall over 100 ms.
    assert not call.closing and speaker.channel.readyState == "open"
    assert 47 <= up_rate <= 52, up_rate
    assert up_gap <= MAX_GAP, up_gap
    assert 47 <= down_rate <= 52, down_rate
    assert down_gap <= MAX_GAP, down_gap
    assert 47 <= echoed <= 52, echoed  # and the downlink carried B's audio back


async def _sample_uplink(call: Any) -> list[tuple[float, int]]:
    """``(time, frames the relay decoded of the call's uplink)`` every 10 ms until
    cancelled: a stall of the uplink shows as a run of samples with no change."""
    samples: list[tuple[float, int]] = []
    try:
        while True:
            samples.append((time.monotonic(), call.stats()["uplink_decoded"]))
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        return samples


def _samples(gathered: list[Any]) -> list[tuple[float, int]]:
    [samples] = gathered
    assert isinstance(samples, list), samples
    return samples


def _longest_unchanged(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """The longest time between two changes of the count (the window's ends count)."""
    changes = [start] + [at for (_, before), (at, count) in pairwise(samples)
                         if count != before] + [end]
    return max(b - a for a, b in pairwise(changes))


def _run_queue_wait() -> float:
    """Seconds this process's main thread has waited for a CPU (Linux; else 0): when the
    machine is busy with others, the stalls measured are the machine's, and this says so."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
