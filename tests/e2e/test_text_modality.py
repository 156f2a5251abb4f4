"""``output_modalities: ["text"]`` over WebRTC, end to end through the relay and the
embedded server: the reply arrives as text deltas on the data channel, the track stays
silent, and no event of the audio path is sent."""

from __future__ import annotations

import asyncio

import numpy as np

from relay.client import CallClient

from ..support.realtime import server_event

TEXT_VAD = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400,
                       "prefix_padding_ms": 200}}}}


def peak(pcm: bytes) -> int:
    samples = np.frombuffer(pcm, dtype=np.int16)
    return int(np.abs(samples.astype(np.int32)).max()) if len(samples) else 0


async def test_text_modality_reply_is_text_on_the_channel_and_silence_on_the_track(
        make_client, speech) -> None:
    client: CallClient = make_client(speech, session=TEXT_VAD)
    await client.connect()
    created = await client.wait_for("session.created")
    assert created["session"]["output_modalities"] == ["text"]
    done = await client.wait_for("response.done", timeout=30)
    received_before = len(client.received)
    await asyncio.sleep(1.0)  # the track keeps running: it must carry silence only
    types = client.types()
    assert done["response"]["status"] == "completed"
    assert done["response"]["output_modalities"] == ["text"]
    deltas = [event["delta"] for _, event in client.events
              if event["type"] == "response.output_text.delta"]
    text = next(event["text"] for _, event in client.events
                if event["type"] == "response.output_text.done")
    assert deltas and "".join(deltas) == text
    assert text.startswith("You said something")  # the parrot's words for the turn
    for kind in ("response.output_audio.delta", "response.output_audio_transcript.delta",
                 "response.output_audio.done", "output_audio_buffer.started",
                 "output_audio_buffer.stopped"):
        assert kind not in types, kind
    for _, event in client.events:
        server_event(event)
    # The track delivered frames all along, every one of them silent.
    assert len(client.received) > received_before
    assert len(client.received) > 2 * 48_000  # more than two seconds of frames
    assert peak(bytes(client.received)) < 64
    assert await client.hangup() == 200
