"""Speech for the speech tests: sentences spoken by Debian's espeak-ng command (another
build of eSpeak than the relay's own), and markers that skip what cannot run here.

pocketsphinx understands eSpeak's US English Klatt voice best (it hears the fixture
``hello.wav``, "Hello there, can you hear me?" in eSpeak's default voice, as "let really
you clearly"), so the sentences here are spoken in it and chosen for words it hears.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import pytest

from relay.audio import RATE
from relay.audio.resample import resample_pcm
from relay.upstream.local.workers import speech_missing

needs_speech = pytest.mark.skipif(speech_missing() is not None,
                                  reason=f"no speech extra: {speech_missing()}")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs Debian's espeak-ng")

#: A sentence and the words of it the recognizer must hear.
SUNNY = "The weather is sunny today."
SUNNY_WORDS = {"weather", "sunny", "today"}
#: Names a tool by one of its words ("weather" for get_weather).
ASK_WEATHER = "Please tell me the weather."


def espeak(text: str, voice: str = "en-us+klatt3") -> bytes:
    """``text`` spoken by the espeak-ng command, as 24 kHz mono PCM16."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            return resample_pcm(wav.readframes(wav.getnframes()), wav.getframerate(), RATE)


def words(text: str) -> set[str]:
    """The words of ``text``, lower case."""
    return set(re.findall(r"[a-z']+", text.lower()))
