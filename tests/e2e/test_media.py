"""Media through a real call: uplink sample accounting, and G.711-only peers."""

from __future__ import annotations

import asyncio

import numpy as np

from relay.server.app import REGISTRY
from relay.webrtc.client import CallClient

from .test_call_e2e import FAST_VAD, rms


async def test_media_uplink_sends_exactly_what_it_receives(relay, make_client) -> None:
    seconds = 4.0
    t = np.arange(int(24000 * seconds)) / 24000
    tone = (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    client: CallClient = make_client(tone)
    await client.connect()
    await asyncio.sleep(seconds + 1.0)
    [call] = list(relay.app[REGISTRY])
    stats = call.stats()
    received = stats["uplink_seconds_in"]
    assert received > seconds
    # Everything resampled went upstream, in whole chunks, and nothing more.
    chunk = call.uplink.chunk_bytes // 2
    assert abs(stats["uplink_samples_sent"] - 24000 * received) <= chunk + 480


async def test_media_g711_only_peer_talks_and_hears(make_client, speech) -> None:
    client: CallClient = make_client(speech, session=FAST_VAD, codecs=("audio/PCMU",))
    await client.connect()
    assert "PCMU/8000" in client.pc.remoteDescription.sdp
    assert "opus" not in client.pc.remoteDescription.sdp.lower()
    await client.wait_for("output_audio_buffer.stopped", timeout=30)
    await asyncio.sleep(0.3)
    reply = bytes(client.received)
    voiced = sum(1 for i in range(0, len(reply), 960) if rms(reply[i:i + 960]) > 300) * 0.02
    assert voiced > 1.0
