"""The local server's recognizer (pocketsphinx), on speech made by Debian's espeak-ng."""

from __future__ import annotations

import pytest

from relay.upstream.local.recognizer import Recognizer

from ...support.speech import (
    ASK_WEATHER,
    SUNNY,
    SUNNY_WORDS,
    espeak,
    needs_espeak,
    needs_speech,
    words,
)
from .signals import silence

pytestmark = [needs_speech, needs_espeak]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


def test_recognizer_hears_the_key_words_of_a_sentence(recognizer: Recognizer) -> None:
    heard = recognizer.transcribe(espeak(SUNNY))
    assert SUNNY_WORDS <= words(heard), heard
    assert heard == heard.lower() and "  " not in heard


def test_recognizer_hears_the_same_words_in_the_same_audio(recognizer: Recognizer) -> None:
    speech = espeak(ASK_WEATHER)
    first = recognizer.transcribe(speech)
    recognizer.transcribe(espeak(SUNNY))  # no state carries from one utterance to the next
    assert recognizer.transcribe(speech) == first
    assert "weather" in words(first)


def test_recognizer_hears_nothing_in_silence(recognizer: Recognizer) -> None:
    assert recognizer.transcribe(silence(1500)) == ""
    assert recognizer.transcribe(b"") == ""
