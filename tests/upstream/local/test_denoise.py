"""``audio.input.noise_reduction`` in the local server: steady noise is gated before the
VAD and the buffer, speech over it is not, and the setting's kind and strength count."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from relay.protocol.energy_vad import window_dbfs
from relay.upstream.local.denoise import NoiseReducer
from relay.upstream.local.local_session import LocalSession

from .signals import chunks, noise, tone

Event = dict[str, Any]


def mix(*signals: bytes) -> bytes:
    length = min(len(s) for s in signals) // 2
    total = sum(np.frombuffer(s[:length * 2], dtype="<i2").astype(np.int32) for s in signals)
    return bytes(np.clip(total, -32768, 32767).astype("<i2").tobytes())


def level(pcm: bytes) -> float:
    return window_dbfs(np.frombuffer(pcm, dtype="<i2"))


def session_with(noise_reduction: Any) -> LocalSession:
    session = LocalSession(mode="parrot")
    [updated] = session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"noise_reduction": noise_reduction}}}})
    assert updated["type"] == "session.updated", updated
    return session


def feed(session: LocalSession, pcm: bytes) -> list[str]:
    kinds: list[str] = []
    for piece in chunks(pcm, 40):
        kinds += [e["type"] for e in session.receive_event(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()})]
    return kinds


FAN = noise(4000, -35.0)  # louder than the VAD's default threshold (-45 dBFS)


def test_denoise_without_it_steady_noise_is_heard_as_speech() -> None:
    session = session_with(None)
    assert "input_audio_buffer.speech_started" in feed(session, FAN)


@pytest.mark.parametrize("kind", ["near_field", "far_field"])
def test_denoise_steady_noise_opens_no_turn(kind: str) -> None:
    session = session_with({"type": kind})
    assert feed(session, FAN) == []


def test_denoise_speech_over_the_noise_is_still_a_turn() -> None:
    session = session_with({"type": "near_field"})
    voice = mix(noise(1500, -35.0, seed=2), tone(1500, -18.0)[:1200 * 48] + bytes(300 * 48))
    kinds = feed(session, FAN[:2000 * 48] + voice + FAN[:1500 * 48])
    assert kinds.count("input_audio_buffer.speech_started") == 1
    assert "input_audio_buffer.speech_stopped" in kinds


def test_denoise_strength_zero_takes_nothing_off() -> None:
    session = session_with({"type": "near_field", "strength": 0})
    assert "input_audio_buffer.speech_started" in feed(session, FAN)


def test_denoise_the_committed_audio_is_the_filtered_audio() -> None:
    session = LocalSession(mode="parrot")
    session.receive_event({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"noise_reduction": {"type": "far_field"}, "turn_detection": None}}}})
    feed(session, FAN)
    committed = session.receive_event({"type": "input_audio_buffer.commit"})
    item_id = committed[0]["item_id"]
    [retrieved] = session.receive_event({"type": "conversation.item.retrieve",
                                         "item_id": item_id})
    audio = base64.b64decode(retrieved["item"]["content"][0]["audio"])
    assert abs(len(audio) - len(FAN)) <= 10 * 48  # at most one window waits
    assert level(audio) < level(FAN) - 25  # about 30 dB off


def test_denoise_reducer_keeps_the_stream_length_and_speech_level() -> None:
    reducer = NoiseReducer("near_field")
    room = noise(300, -60.0)  # a quiet room before anyone speaks: the floor
    speechlike = room + tone(500, -20.0) + noise(200, -60.0) + tone(500, -20.0)
    out = b"".join(reducer.process(piece) for piece in chunks(speechlike, 37))
    assert len(speechlike) - len(out) < 10 * 48
    words = slice(400 * 48, 700 * 48)
    assert abs(level(out[words]) - level(speechlike[words])) < 0.5
    assert level(out[:300 * 48]) < level(room) - 25
