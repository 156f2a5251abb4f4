"""A lossy, jittery link between a client and the relay: the model still hears the speech,
complete as the link allows, in order, sample-exact; the downlink keeps its pace.

The client runs in its own network namespace and reaches the relay only through a UDP
forwarder the test runs (delay, jitter, reordering); nftables' ``numgen random`` drops 5%
of the datagrams both ways on the client's side. The client sends Opus with in-band FEC,
as browsers do. What reached the upstream is compared with what the client spoke.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.audio.opus import load_libopus
from relay.server.app import REGISTRY, create_app

from ..conftest import loopback_settings, write_wav
from ..support.netlab import ROOT, NetLab
from ..support.recording import record_upstream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(load_libopus() is None, reason="libopus not found (no FEC)"),
]

LAB_SIDE, CLIENT_IP = "10.201.1.1", "10.201.1.2"
RELAY_IP = "10.201.0.1"
PROXY_PORT = 40000
LOSS_PER_MILLE = 50
DELAY, JITTER, REORDER = 0.040, 0.030, 0.01


def aligned_correlation(sent: np.ndarray, heard: np.ndarray) -> tuple[int, float]:
    """Where ``sent`` starts in ``heard`` (by FFT cross-correlation), and the correlation
    coefficient of the two there."""
    size = 1 << int(np.ceil(np.log2(len(sent) + len(heard))))
    cross = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(sent, size)), size)
    lag = int(np.argmax(cross[:len(heard)]))
    part = heard[lag:lag + len(sent)]
    return lag, float(np.corrcoef(sent[:len(part)], part)[0, 1])


async def test_lossy_link_uplink_is_complete_in_order_and_sample_exact(
        netlab: NetLab, aiohttp_server: Any, speech: bytes, tmp_path: Path) -> None:
    client_ns = netlab.namespace("client", LAB_SIDE, CLIENT_IP)
    netlab.add_address(RELAY_IP)
    # Loss on the client's side of the link, both ways; no direct path to the relay.
    lose = f"numgen random mod 1000 < {LOSS_PER_MILLE} counter drop"
    client_ns.nft(f"""table inet lab {{
        chain out {{ type filter hook output priority 0;
            ip daddr {RELAY_IP} meta l4proto udp drop;
            ip daddr {LAB_SIDE} udp dport {PROXY_PORT} {lose}; }}
        chain in {{ type filter hook input priority 0;
            ip saddr {RELAY_IP} meta l4proto udp drop;
            ip saddr {LAB_SIDE} udp sport {PROXY_PORT} {lose}; }}
    }}""")
    app: web.Application = create_app(loopback_settings(ice_addresses=(RELAY_IP,)))
    recorded = record_upstream(app)
    relay: TestServer = await aiohttp_server(app, host=LAB_SIDE)
    proxy = start_forwarder()
    assert proxy.stdout is not None and proxy.stdin is not None
    assert await asyncio.to_thread(proxy.stdout.readline) == "ready\n"
    spoken = speech * 3
    wav = tmp_path / "speech.wav"
    write_wav(wav, spoken)
    seconds = len(spoken) / 48000 + 1.5
    log = tmp_path / "client.log"
    client = netlab.python(client_ns, "-m", "tests.support.lossy_client",
                           f"http://{LAB_SIDE}:{relay.port}", str(wav), CLIENT_IP, LAB_SIDE,
                           str(PROXY_PORT), str(seconds), log=log)
    try:
        call = await _the_call(relay)
        # The relay's port is in its answer: point the forwarder at it.
        port = int(next(line.split()[5] for line in call.pc.localDescription.sdp.splitlines()
                        if line.startswith("a=candidate:")))
        proxy.stdin.write(f"{RELAY_IP} {port}\n")
        proxy.stdin.flush()
        pace = await _downlink_pace(call, seconds - 1.0)
        remote = [s for s in (await call.pc.getStats()).values()
                  if s.type == "remote-inbound-rtp"]
        status = await asyncio.to_thread(client.wait, seconds + 40)
    finally:
        proxy.stdin.close()
        forwarded = json.loads(await asyncio.to_thread(proxy.stdout.readline) or "{}")
        proxy.wait(timeout=10)
    print(log.read_text()[-2000:])
    assert status == 0
    result = json.loads(log.read_text().strip().splitlines()[-1])
    await _until(lambda: call.closed, 10)
    stats = call.stats()
    [connector] = recorded
    [upstream] = connector.sockets
    heard = np.frombuffer(bytes(upstream.audio), dtype=np.int16).astype(np.float64)
    sent = np.frombuffer(spoken, dtype=np.int16).astype(np.float64)
    lag, correlation = aligned_correlation(sent, heard)
    accounted = stats["uplink_packets"] - stats["uplink_late"] + stats["uplink_lost"]
    print(f"lossy link: {LOSS_PER_MILLE / 10:.0f}% loss, {JITTER * 1000:.0f} ms jitter, "
          f"{REORDER:.0%} reordering: correlation {correlation:.3f} (lag {lag} samples), "
          f"lost {stats['uplink_lost']} of {accounted} packets, {stats['uplink_recovered']} "
          f"rebuilt from FEC, {stats['uplink_concealed']} concealed, "
          f"{stats['uplink_late']} too late, forwarder jumped {forwarded.get('jumped')}; "
          f"downlink {pace:.2f} frames/s while the peer reported "
          f"{remote[0].packetsLost if remote else '?'} lost")
    # The link really was bad: packets were lost and displaced.
    assert stats["uplink_lost"] >= 0.02 * accounted and forwarded["jumped"] > 0
    # Every packet that arrived was used, in order: none came too late for the window
    # (but for a rare one, when a loaded machine stalls a process for longer than it).
    assert stats["uplink_late"] <= 0.01 * accounted
    # Browsers' FEC rebuilt lost packets; the rest were concealed, each at its length.
    assert stats["uplink_recovered"] > 0
    assert stats["uplink_recovered"] + stats["uplink_concealed"] == stats["uplink_lost"]
    # Sample-exact: every packet (decoded, rebuilt or concealed) is 20 ms at 24 kHz, and
    # the upstream got exactly that, all of it.
    assert stats["uplink_samples_sent"] == 480 * (
        stats["uplink_decoded"] + stats["uplink_recovered"] + stats["uplink_concealed"])
    # (The last chunks may still have been queued for the upstream when the call closed.)
    assert 0 <= stats["uplink_samples_sent"] - len(heard) <= 480 * 10
    # (aiortc counts packets it sent before the path was up: those never arrive.)
    assert accounted <= result["packets_sent"][0]
    # What the model heard is what was said.
    assert correlation > 0.9, correlation
    # The downlink kept its pace (50 frames a second) while the peer reported loss.
    assert remote and remote[0].packetsLost > 0
    # (Never faster; slower only when a loaded machine stalls the loop and the track
    # skips frames rather than bursting them.)
    assert 44 <= pace <= 50.5, pace


def start_forwarder() -> subprocess.Popen[str]:
    """The delay/jitter/reorder forwarder, as its own process in this namespace."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.impair", LAB_SIDE, str(PROXY_PORT), str(DELAY),
         str(JITTER), str(REORDER), "1"], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _the_call(relay: TestServer) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for call in relay.app[REGISTRY]:
            if call.pc.localDescription is not None:
                return call
        await asyncio.sleep(0.02)
    raise AssertionError("no call was answered")


async def _downlink_pace(call: Any, seconds: float) -> float:
    """Frames a second the relay sent the peer over ``seconds`` once connected."""
    await _until(lambda: call.pc.connectionState == "connected", 30)
    await asyncio.sleep(0.5)
    start, frames = time.monotonic(), call.stats()["frames_out"]
    await asyncio.sleep(max(1.0, seconds - 1.0))
    return float((call.stats()["frames_out"] - frames) / (time.monotonic() - start))
