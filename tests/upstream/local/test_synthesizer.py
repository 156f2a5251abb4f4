"""The local server's voice (eSpeak NG through ctypes): voices, pace, and speech that the
recognizer understands."""

from __future__ import annotations

import numpy as np
import pytest

from relay.errors import SpeechError
from relay.upstream.local.recognizer import Recognizer
from relay.upstream.local.synthesizer import (
    ESPEAK_VOICES,
    MAX_WORDS_PER_MINUTE,
    MIN_WORDS_PER_MINUTE,
    WORDS_PER_MINUTE,
    Synthesizer,
    espeak_voice,
    words_per_minute,
)
from relay.upstream.local.workers import speech_missing

from ...support.speech import SUNNY_WORDS, words

GA_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin",
             "cedar")


@pytest.fixture(scope="module")
def synthesizer() -> Synthesizer:
    missing = speech_missing()
    if missing is not None:
        pytest.skip(f"no speech extra: {missing}")
    return Synthesizer()


def seconds(pcm: bytes) -> float:
    return len(pcm) / 48000


def voiced(pcm: bytes) -> float:
    """Seconds of 10 ms windows louder than -40 dBFS."""
    x = np.frombuffer(pcm[: len(pcm) // 480 * 480], dtype="<i2").astype(float).reshape(-1, 240)
    return float((np.sqrt((x**2).mean(axis=1)) > 328).sum()) / 100


def test_synthesizer_maps_every_ga_voice_and_falls_back_to_alloys() -> None:
    assert set(ESPEAK_VOICES) == set(GA_VOICES)
    assert len(set(ESPEAK_VOICES.values())) == len(GA_VOICES)
    assert espeak_voice("Coral") == ESPEAK_VOICES["coral"]
    for other in ("nova", {"id": "voice_123"}, None):
        assert espeak_voice(other) == ESPEAK_VOICES["alloy"]


@pytest.mark.parametrize(("speed", "rate"), [
    (1.0, WORDS_PER_MINUTE), (1.5, 262), (0.25, MIN_WORDS_PER_MINUTE), (3, MAX_WORDS_PER_MINUTE),
    ("fast", WORDS_PER_MINUTE), (True, WORDS_PER_MINUTE)])
def test_synthesizer_speed_maps_onto_words_per_minute(speed: object, rate: int) -> None:
    assert words_per_minute(speed) == rate
    assert MIN_WORDS_PER_MINUTE <= rate <= MAX_WORDS_PER_MINUTE


@pytest.mark.parametrize("voice", GA_VOICES)
def test_synthesizer_speaks_in_every_voice(synthesizer: Synthesizer, voice: str) -> None:
    pcm = synthesizer.synthesize("Hello there.", espeak_voice(voice))
    assert len(pcm) % 2 == 0 and 0.5 < seconds(pcm) < 2.5
    assert voiced(pcm) > 0.3


def test_synthesizer_speaks_faster_at_a_higher_rate(synthesizer: Synthesizer) -> None:
    text = "One two three four five six seven eight nine ten."
    normal = synthesizer.synthesize(text)
    fast = synthesizer.synthesize(text, rate=2 * WORDS_PER_MINUTE)
    assert 0.35 < seconds(fast) / seconds(normal) < 0.7


def test_synthesizer_says_nothing_for_blank_text(synthesizer: Synthesizer) -> None:
    assert synthesizer.synthesize("  \n") == b""


def test_synthesizer_refuses_an_unknown_voice(synthesizer: Synthesizer) -> None:
    with pytest.raises(SpeechError, match="no voice"):
        synthesizer.synthesize("hi", "xx-nowhere+nobody")
    assert synthesizer.synthesize("hi")  # and goes on


def test_synthesizer_speech_is_understood_by_the_recognizer(synthesizer: Synthesizer) -> None:
    text = "You said: the weather is sunny today"
    heard = Recognizer().transcribe(synthesizer.synthesize(text))
    assert SUNNY_WORDS | {"said"} <= words(heard), heard
