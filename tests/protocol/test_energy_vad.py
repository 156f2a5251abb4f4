"""The energy VAD, with plain synchronous calls."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from relay.protocol.energy_vad import EnergyVad, SpeechStarted, SpeechStopped, threshold_dbfs

from ..upstream.local.signals import chunks, noise, silence, tone


def feed(vad: EnergyVad, pcm: bytes, ms: int = 40) -> list[object]:
    events: list[object] = []
    for piece in chunks(pcm, ms):
        events += vad.feed(piece)
    return events


def test_vad_threshold_maps_to_dbfs() -> None:
    assert threshold_dbfs(0.0) == -70.0
    assert threshold_dbfs(0.5) == -45.0
    assert threshold_dbfs(1.0) == -20.0
    assert threshold_dbfs(7.0) == -20.0


def test_vad_reports_start_with_prefix_padding_and_end_with_silence() -> None:
    vad = EnergyVad(prefix_padding_ms=300, silence_duration_ms=500)
    events = feed(vad, silence(500) + tone(1000) + silence(1000))
    assert events == [SpeechStarted(200), SpeechStopped(2000)]
    assert not vad.in_speech


def test_vad_clamps_start_at_zero() -> None:
    vad = EnergyVad(prefix_padding_ms=300, silence_duration_ms=200)
    assert feed(vad, silence(100) + tone(400) + silence(300)) == [
        SpeechStarted(0), SpeechStopped(700)]


def test_vad_start_never_precedes_previous_turn_end() -> None:
    vad = EnergyVad(prefix_padding_ms=300, silence_duration_ms=200)
    events = feed(vad, tone(300) + silence(300) + tone(300) + silence(300))
    assert events == [SpeechStarted(0), SpeechStopped(500), SpeechStarted(500),
                      SpeechStopped(1100)]


def test_vad_threshold_ignores_quiet_signal() -> None:
    quiet = silence(200) + tone(600, dbfs=-55) + silence(600)
    assert feed(EnergyVad(threshold=0.5), quiet) == []
    assert feed(EnergyVad(threshold=0.1), quiet)[0] == SpeechStarted(0)


def test_vad_ignores_silence_and_low_noise() -> None:
    vad = EnergyVad()
    assert feed(vad, silence(1000) + noise(2000, dbfs=-60) + silence(500)) == []


def test_vad_ignores_a_short_click() -> None:
    vad = EnergyVad()
    assert feed(vad, silence(500) + tone(10, dbfs=-6) + silence(500)) == []


def test_vad_short_pause_does_not_split_a_turn() -> None:
    vad = EnergyVad(prefix_padding_ms=0, silence_duration_ms=500)
    events = feed(vad, tone(300) + silence(200) + tone(300) + silence(600))
    assert events == [SpeechStarted(0), SpeechStopped(1300)]


def test_vad_is_independent_of_chunk_size() -> None:
    pcm = silence(330) + tone(777) + silence(910)
    expected = feed(EnergyVad(), pcm, 40)
    vad = EnergyVad()
    odd: list[object] = []
    for i in range(0, len(pcm), 1001):  # odd byte counts split samples
        odd += vad.feed(pcm[i:i + 1001])
    assert odd == expected and len(expected) == 2


def test_vad_keeps_absolute_time_from_start_sample() -> None:
    vad = EnergyVad(prefix_padding_ms=100, silence_duration_ms=100, start_sample=24 * 5000)
    assert feed(vad, silence(200) + tone(200) + silence(200)) == [
        SpeechStarted(5100), SpeechStopped(5500)]


def test_vad_retain_from_covers_prefix_padding() -> None:
    vad = EnergyVad(prefix_padding_ms=300)
    feed(vad, silence(1000))
    assert vad.retain_from_ms() == 700
    vad.reset()
    assert vad.retain_from_ms() == 1000


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_vad_detects_espeak_speech_at_default_threshold(tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello, can you hear me? This is a test."],
                   check=True, capture_output=True, timeout=10)
    with wave.open(str(wav)) as reader:
        rate = reader.getframerate()
        raw = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    positions = np.arange(int(len(raw) * 24000 / rate)) * rate / 24000
    speech = np.interp(positions, np.arange(len(raw)), raw).astype("<i2").tobytes()
    speech_ms = len(speech) // 48
    vad = EnergyVad()
    events = feed(vad, silence(1000) + noise(500, dbfs=-65) + speech + silence(1000))
    assert isinstance(events[0], SpeechStarted) and isinstance(events[-1], SpeechStopped)
    assert 1500 - 300 <= events[0].audio_start_ms <= 1500
    assert events[-1].audio_end_ms <= 1500 + speech_ms + 500 + 10


def test_vad_pcm_constants_are_the_audio_layers() -> None:
    from relay import audio
    from relay.protocol import energy_vad

    assert (energy_vad.RATE, energy_vad.SAMPLE_BYTES) == (audio.RATE, audio.SAMPLE_BYTES)
