"""Recorded calls over real sockets: what the file holds, and when.

An echo call's clicks and their echoes must sit, in the recording, at the round trip the
client measured (within a frame); a barge-in call's assistant channel must end where the
truncation's ``audio_end_ms`` says the user stopped hearing it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import ClientSession
from aiortc.rtp import RtpPacket

from relay.client import CallClient
from relay.server.app import RECORDS
from relay.webrtc.internals import wrap_rtp_send

from ..conftest import LOOPBACK, base_url
from ..e2e.test_barge_in import first_reply_playing, session, tone
from ..support.rtp import record_rtp
from .support import TimedSource, click_train, onsets, read_audio, until, unzip

FRAME_SECONDS = 0.020
SERVER_KEY = {"Authorization": "Bearer sk-test"}


def sent_rtp(client: CallClient) -> list[tuple[float, bytes]]:
    """Record the Opus payloads the client sends from now on, with the time each left."""
    sent: list[tuple[float, bytes]] = []

    def note(data: bytes) -> None:
        if not 192 <= data[1] <= 223:  # RTP, not RTCP
            sent.append((time.monotonic(), RtpPacket.parse(data).payload))

    wrap_rtp_send(client.pc.getSenders()[0], note)
    return sent


def click_times(packets: list[tuple[float, bytes]], after: float,
                threshold: float) -> list[float]:
    """When each click began to pass (to leave, or to reach, the client): the time of the
    RTP packet whose audio holds its onset, plus the onset's place in that packet."""
    decoder = av.CodecContext.create("opus", "r")
    found: list[float] = []
    for at, payload in packets:
        frames = decoder.decode(av.Packet(payload))
        if at < after or not frames:
            continue
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)
        if frames[0].format.name.startswith("s16"):
            x /= 32768.0
        channels = len(frames[0].layout.channels)
        mono = x.reshape(-1, channels)[:, 0] if frames[0].format.is_packed else x[
            :frames[0].samples]
        loud = np.flatnonzero(np.abs(mono) > threshold)
        if len(loud) and (not found or at - found[-1] > 0.2):
            found.append(at + loud[0] / frames[0].sample_rate)
    return found


def round_trips(clicks: list[float], echoes: list[float],
                most: float = 0.25) -> dict[int, float]:
    """Each echo's delay after the click it echoes (the last one before it, within
    ``most`` seconds), by the click's index."""
    delays: dict[int, float] = {}
    for echo in echoes:
        before = [i for i, click in enumerate(clicks) if 0 <= echo - click <= most]
        if before:
            delays[before[-1]] = echo - clicks[before[-1]]
    return delays


def tone_ms(x: np.ndarray, rate: int, freq: float) -> float:
    """Seconds of ``x`` where a tone of ``freq`` (±40 Hz) is loud: its band, by FFT, then
    its envelope over a threshold."""
    spectrum = np.fft.rfft(x)
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[np.abs(bins - freq) > 40] = 0
    band = np.fft.irfft(spectrum, len(x))
    window = int(rate / freq) * 2  # two periods: the envelope of a steady tone is flat
    envelope = np.sqrt(np.convolve(band ** 2, np.ones(window) / window, mode="same"))
    return float(np.count_nonzero(envelope > 0.05) / rate)


async def download(server: Any, call_id: str) -> dict[str, bytes]:
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/v1/realtime/calls/{call_id}/content",
                            headers=SERVER_KEY) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "application/zip"
            return unzip(await response.read())


async def recorded_ready(server: Any, call_id: str) -> None:
    recordings = server.app[RECORDS].recordings
    await until(lambda: recordings.status(call_id) == "ready", 10, "the recording")


def lines(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["events.jsonl"].decode().splitlines()]


async def test_recording_echo_clicks_sit_at_the_measured_round_trip(
        relay_factory, tmp_path: Path) -> None:
    server = await relay_factory(local_mode="echo", record="all", record_dir=str(tmp_path))
    source = TimedSource()
    client = CallClient(base_url(server), source, ice_addresses=LOOPBACK)
    rtp = record_rtp(client.pc)
    try:
        await client.connect()
        departures = sent_rtp(client)
        notice = await client.wait_for("relay.recording.started", timeout=10)
        assert notice["call_id"] == client.call_id
        assert client.events[0][1]["type"] == "session.created"  # still the first event
        await asyncio.sleep(0.5)
        clicks = 6
        first = source.play_now(click_train(clicks))
        await asyncio.sleep(clicks * 0.5 + 0.5)
        # The round trip on the client's wire: from the click's packet leaving to its
        # echo's arriving (the client's own encoder buffering is not the relay's to see).
        sent = click_times(departures, source.sent_at[first], threshold=0.1)
        # From the first click's packet on: its echo can arrive before its onset's own
        # time (the onset lies up to a frame into the packet, the round trip can be less).
        heard = click_times([(p.at, p.payload) for p in rtp.packets], sent[0] - FRAME_SECONDS,
                            threshold=0.1)
        assert len(sent) == clicks, sent
        measured = round_trips(sent, heard)
        assert len(measured) == clicks, (heard, sent)
        assert await client.hangup() == 200
    finally:
        await client.close()
    assert client.call_id is not None
    await recorded_ready(server, client.call_id)
    files = await download(server, client.call_id)
    rate, audio = read_audio(files["audio.ogg"])
    user = onsets(audio[:, 0], rate, 0.1)
    assistant = onsets(audio[:, 1], rate, 0.1)
    assert len(user) == clicks, user
    in_file = round_trips(user, assistant)
    assert in_file.keys() == measured.keys(), (in_file, measured)
    for click, client_rtt in measured.items():
        assert abs(in_file[click] - client_rtt) <= FRAME_SECONDS, (in_file, measured)
    # The events both ways, timed on the file's clock, audio left out.
    events = lines(files)
    directions = {line["dir"] for line in events}
    assert {"relay_to_client", "upstream_to_relay", "relay_to_upstream"} <= directions
    assert not any(line["event"].get("type") == "input_audio_buffer.append" for line in events)
    deltas = [line for line in events
              if line["event"].get("type") == "response.output_audio.delta"]
    assert deltas and all(set(d["event"]["delta"]) == {"omitted_audio_bytes"} for d in deltas)
    assert all(a["t"] <= b["t"] for a, b in zip(events, events[1:], strict=False))
    metadata = json.loads(files["metadata.json"])
    assert metadata["status"] == "complete"
    assert metadata["call_id"] == client.call_id
    assert metadata["ended"]["reason"] == "hangup"
    assert metadata["call"]["rtp"]["inbound"]["packets_received"] > 100
    assert abs(metadata["audio_seconds"] - len(audio) / rate) < 0.05


async def test_recording_barge_in_assistant_channel_ends_at_audio_end_ms(
        relay_factory, tmp_path: Path) -> None:
    server = await relay_factory(record="all", record_dir=str(tmp_path))
    client = CallClient(base_url(server), TimedSource(), ice_addresses=LOOPBACK,
                        session=session())
    try:
        await client.connect()
        await first_reply_playing(client, 0.6)
        client.source.play(tone(0.5, 880))  # type: ignore[attr-defined]
        truncated = await client.wait_for("conversation.item.truncated", timeout=10)
        await asyncio.sleep(0.5)
        assert await client.hangup() == 200
    finally:
        await client.close()
    assert client.call_id is not None
    await recorded_ready(server, client.call_id)
    files = await download(server, client.call_id)
    rate, audio = read_audio(files["audio.ogg"])
    # The assistant's first reply is the parrot's copy of the 440 Hz tone (a second reply,
    # to the user's 880 Hz interruption, may follow): how much of it the user heard is
    # how long the assistant channel holds 440 Hz (gaps, if playout ever ran dry, excluded).
    heard_ms = tone_ms(audio[:, 1], rate, 440) * 1000
    assert abs(heard_ms - truncated["audio_end_ms"]) <= 20, (heard_ms, truncated)
    events = lines(files)
    sent = [line for line in events if line["dir"] == "relay_to_upstream"
            and line["event"]["type"] == "conversation.item.truncate"]
    assert sent and sent[0]["event"]["audio_end_ms"] == truncated["audio_end_ms"]
