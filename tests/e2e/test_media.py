"""Media through a real call: uplink sample accounting, and G.711-only peers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from relay.client import CallClient
from relay.server.app import REGISTRY

from .test_call_e2e import FAST_VAD, rms


def tone(seconds: float) -> bytes:
    """A 440 Hz tone, 24 kHz mono PCM16."""
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


async def stats_after_playing(relay, make_client, seconds: float) -> dict:
    """Play a tone of ``seconds`` into a call; the call's stats once it has all arrived."""
    client: CallClient = make_client(tone(seconds))
    await client.connect()
    await asyncio.sleep(seconds + 1.0)
    [call] = list(relay.app[REGISTRY])
    return call.stats() | {"chunk_samples": call.media.inbound.uplink.chunk_bytes // 2}


async def test_media_uplink_sends_exactly_what_it_receives(relay, make_client) -> None:
    seconds = 4.0
    stats = await stats_after_playing(relay, make_client, seconds)
    received = stats["uplink_seconds_in"]
    assert received > seconds
    # Everything resampled went upstream, in whole chunks, and nothing more.
    assert abs(stats["uplink_samples_sent"] - 24000 * received) <= stats["chunk_samples"] + 480
    # The relay decoded the RTP itself (no aiortc jitter buffer), and nothing was lost.
    assert stats["uplink_tapped"] and stats["uplink_packets"] >= seconds * 50
    assert stats["uplink_lost"] == 0 and stats["uplink_undecodable"] == 0


@pytest.mark.parametrize("codec", ["PCMU", "G722"])
async def test_media_g711_or_g722_only_peer_talks_and_hears(make_client, speech,
                                                            codec: str) -> None:
    client: CallClient = make_client(speech, session=FAST_VAD, codecs=(f"audio/{codec}",))
    await client.connect()
    assert f"{codec}/8000" in client.pc.remoteDescription.sdp
    assert "opus" not in client.pc.remoteDescription.sdp.lower()
    await client.wait_for("output_audio_buffer.stopped", timeout=30)
    await asyncio.sleep(0.3)
    reply = bytes(client.received)
    voiced = sum(1 for i in range(0, len(reply), 960) if rms(reply[i:i + 960]) > 300) * 0.02
    assert voiced > 1.0


async def test_media_uplink_falls_back_to_the_track_without_the_tap(
        relay, make_client, monkeypatch) -> None:
    # An aiortc without the receiver internals the tap needs: audio goes through its track.
    monkeypatch.setattr("relay.webrtc.call_media.tap_audio", lambda pc, on_packet: False)
    seconds = 2.0
    stats = await stats_after_playing(relay, make_client, seconds)
    assert not stats["uplink_tapped"] and stats["uplink_packets"] == 0
    assert stats["uplink_seconds_in"] > seconds
    assert abs(stats["uplink_samples_sent"] - 24000 * stats["uplink_seconds_in"]) <= 960
