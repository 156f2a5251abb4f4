"""Barge-in over real sockets: playout stops at once and truncation tells the truth.

The user's first utterance is a steady tone, so the parrot's reply is that tone from its
very first sample (no prefix padding): every RTP packet of the reply the client receives
is audibly reply audio, and counting them measures exactly what the user heard. The
embedded upstream rejects a truncation longer than the item, so an overshoot fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from aiohttp import ClientSession

from relay.client import CallClient

from ..conftest import base_url
from ..support.rtp import RtpRecorder, record_rtp

FRAME_MS = 20
#: RMS above this is reply audio (the tone is ~4600 RMS; Opus silence is ~0).
AUDIBLE = 500.0


def tone(seconds: float, freq: float, amplitude: float = 0.2) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def session(interrupt: bool = True) -> dict[str, Any]:
    return {"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 0,
        "interrupt_response": interrupt}}}}


def audible_between(rtp: RtpRecorder, start: float, end: float) -> list[float]:
    """Arrival times of audible reply packets in [start, end)."""
    return [at for at, level in rtp.levels() if start <= at < end and level > AUDIBLE]


def event_time(client: CallClient, kind: str, nth: int = 0) -> float:
    return [at for at, e in client.events if e["type"] == kind][nth]


async def first_reply_playing(client: CallClient, seconds: float) -> dict[str, Any]:
    """Say a tone, wait until its parrot reply has played for ``seconds``."""
    client.source.play(tone(1.5, 440))
    started = await client.wait_for("output_audio_buffer.started", timeout=20)
    await asyncio.sleep(seconds)
    return started


def assert_no_errors(client: CallClient, allowed: tuple[str, ...] = ()) -> None:
    errors = [e for _, e in client.events
              if e["type"] == "error" and e["error"]["code"] not in allowed]
    assert not errors, errors


async def test_barge_in_speech_cuts_playout_and_truncates_to_what_was_heard(
        relay, make_client) -> None:
    client: CallClient = make_client(session=session())
    rtp = record_rtp(client.pc)
    await client.connect()
    started = await first_reply_playing(client, 0.6)
    client.source.play(tone(0.5, 880))  # the user talks over the reply
    cleared = await client.wait_for("output_audio_buffer.cleared", timeout=10)
    assert cleared["response_id"] == started["response_id"]
    truncated = await client.wait_for("conversation.item.truncated", timeout=10)
    await asyncio.sleep(0.3)
    t_started = event_time(client, "output_audio_buffer.started")
    t_cleared = event_time(client, "output_audio_buffer.cleared")
    heard = audible_between(rtp, t_started - 1.0, t_cleared + 0.25)
    # Playout stops within 60 ms of the cleared event.
    assert heard[-1] - t_cleared < 0.060, heard[-1] - t_cleared
    # audio_end_ms is what the client received, to within a frame (plus one in flight).
    received_ms = len(heard) * FRAME_MS
    assert abs(truncated["audio_end_ms"] - received_ms) <= 2 * FRAME_MS, (
        truncated["audio_end_ms"], received_ms)
    assert 400 <= truncated["audio_end_ms"] <= 900
    # The relay recorded it for logs and the benchmark.
    async with ClientSession() as http:
        async with http.get(f"{base_url(relay)}/stats") as response:
            [call] = (await response.json())["calls"]
    [barge] = call["barge_ins"]
    assert barge["truncated"] == [[truncated["item_id"], truncated["audio_end_ms"]]]
    assert barge["reason"] == "speech_started" and 10 < barge["cut_latency_ms"] < 1000
    # The barge-in utterance gets its own reply afterwards: the conversation goes on.
    await client.wait_for("output_audio_buffer.stopped", timeout=20)
    assert_no_errors(client)


async def test_barge_in_client_cancel_and_clear_truncate_exactly(make_client) -> None:
    client: CallClient = make_client(session=session())
    rtp = record_rtp(client.pc)
    await client.connect()
    started = await first_reply_playing(client, 0.5)
    client.send({"type": "response.cancel"})
    client.send({"type": "output_audio_buffer.clear"})
    cleared = await client.wait_for("output_audio_buffer.cleared", timeout=10)
    assert cleared["response_id"] == started["response_id"]
    truncated = await client.wait_for("conversation.item.truncated", timeout=10)
    await asyncio.sleep(0.3)
    t_cleared = event_time(client, "output_audio_buffer.cleared")
    heard = audible_between(rtp, 0, t_cleared + 0.25)
    assert heard[-1] - t_cleared < 0.060
    assert abs(truncated["audio_end_ms"] - len(heard) * FRAME_MS) <= 2 * FRAME_MS
    assert "output_audio_buffer.stopped" not in client.types()
    # The parrot generates at 4x real time, so by now it may have finished generating: the
    # upstream then answers the cancel as the hosted service does. Nothing else may fail.
    assert_no_errors(client, allowed=("response_cancel_not_active",))


async def test_barge_in_between_two_responses(make_client) -> None:
    """A reply generated long before it finished playing, a second one queued behind it,
    and an interrupt while the first still plays: the first is truncated at what was
    heard, the second, never heard, is deleted."""
    client: CallClient = make_client(session=session())
    rtp = record_rtp(client.pc)
    await client.connect()
    first = await first_reply_playing(client, 0.1)
    await client.wait_for("response.done", timeout=10)  # generated at 4x real time
    client.send({"type": "response.create"})  # a second reply, queued behind the first
    second = await client.wait_for(
        "response.done", lambda e: e["response"]["id"] != first["response_id"], timeout=10)
    client.send({"type": "output_audio_buffer.clear"})
    cleared = [e for e in [await client.wait_for("output_audio_buffer.cleared")]]
    truncated = await client.wait_for("conversation.item.truncated", timeout=10)
    deleted = await client.wait_for("conversation.item.deleted", timeout=10)
    await asyncio.sleep(0.3)
    assert cleared[0]["response_id"] == first["response_id"]
    all_cleared = [e["response_id"] for _, e in client.events
                   if e["type"] == "output_audio_buffer.cleared"]
    assert set(all_cleared) == {first["response_id"], second["response"]["id"]}
    assert deleted["item_id"] == second["response"]["output"][0]["id"]
    t_cleared = event_time(client, "output_audio_buffer.cleared")
    heard = audible_between(rtp, 0, t_cleared + 0.25)
    assert abs(truncated["audio_end_ms"] - len(heard) * FRAME_MS) <= 2 * FRAME_MS
    # Nothing of the second reply was ever played.
    assert "output_audio_buffer.started" not in [
        e["type"] for _, e in client.events if e.get("response_id") == second["response"]["id"]]
    assert_no_errors(client)


async def test_barge_in_after_playout_ended_cuts_nothing(make_client) -> None:
    client: CallClient = make_client(session=session())
    await client.connect()
    await first_reply_playing(client, 0.0)
    await client.wait_for("output_audio_buffer.stopped", timeout=20)
    client.source.play(tone(0.4, 880))
    await client.wait_for("input_audio_buffer.speech_started",
                          after=len(client.events), timeout=10)
    await asyncio.sleep(0.2)
    kinds = client.types()
    assert "output_audio_buffer.cleared" not in kinds
    assert "conversation.item.truncated" not in kinds
    assert_no_errors(client)


async def test_barge_in_interrupt_response_false_cuts_nothing(make_client) -> None:
    client: CallClient = make_client(session=session(interrupt=False))
    rtp = record_rtp(client.pc)
    await client.connect()
    await first_reply_playing(client, 0.4)
    client.source.play(tone(0.4, 880))
    await client.wait_for("input_audio_buffer.speech_started",
                          lambda e: True, after=5, timeout=10)
    stopped = await client.wait_for("output_audio_buffer.stopped", timeout=20)
    await asyncio.sleep(0.3)
    t_started = event_time(client, "output_audio_buffer.started")
    heard = audible_between(rtp, t_started - 1.0, event_time(client, stopped["type"]) + 0.25)
    assert len(heard) * FRAME_MS >= 1400  # the whole 1.5 s reply was played
    kinds = client.types()
    assert "output_audio_buffer.cleared" not in kinds
    assert "conversation.item.truncated" not in kinds
    assert_no_errors(client)
