"""The relay in front of its embedded assistant, end to end over real loopback sockets: a
spoken sentence in over WebRTC, its transcript and a spoken answer back (Opus both ways)."""

from __future__ import annotations

import asyncio

import numpy as np

from relay.client import CallClient, PcmSource
from relay.upstream.local.recognizer import Recognizer
from relay.upstream.local.synthesizer import Synthesizer

from ..conftest import LOOPBACK, RelayFactory, base_url
from ..support.speech import SUNNY, SUNNY_WORDS, espeak, needs_espeak, needs_speech, words

pytestmark = [needs_speech, needs_espeak]

SESSION = {"type": "realtime", "audio": {"input": {
    "transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}


def envelope(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm[: len(pcm) // 960 * 960], dtype="<i2").astype(float)
    return np.sqrt((x.reshape(-1, 480) ** 2).mean(axis=1))


def best_match(sent: bytes, heard: bytes) -> float:
    """The best correlation of ``sent``'s loudness contour with a stretch of ``heard``'s."""
    a, b = envelope(sent), envelope(heard)
    return max(float(np.corrcoef(a, b[lag:lag + len(a)])[0, 1])
               for lag in range(len(b) - len(a)) if b[lag:lag + len(a)].std() > 0)


async def test_assistant_call_hears_the_sentence_and_answers_it(
        relay_factory: RelayFactory) -> None:
    relay = await relay_factory(local_mode="assistant")
    pcm = bytes(48 * 300) + espeak(SUNNY) + bytes(48 * 1500)
    client = CallClient(base_url(relay), PcmSource(pcm), session=SESSION,
                        ice_addresses=LOOPBACK)
    try:
        await client.connect()
        completed = await client.wait_for(
            "conversation.item.input_audio_transcription.completed", timeout=60)
        await client.wait_for("output_audio_buffer.stopped", timeout=60)
        await asyncio.sleep(0.3)
        done = await client.wait_for("response.output_audio_transcript.done")
    finally:
        await client.close()
    assert SUNNY_WORDS <= words(completed["transcript"]), completed["transcript"]
    assert done["transcript"] == f"You said: {completed['transcript']}"
    heard = bytes(client.received)
    # What played is the reply's speech (Opus changes samples, not the loudness contour)...
    assert best_match(Synthesizer().synthesize(done["transcript"]), heard) > 0.9
    # ...and it speaks. (Through Opus the recognizer loses a word or two of eSpeak's.)
    assert {"you", "said", "today"} <= words(Recognizer().transcribe(heard))
