"""Sans-I/O energy voice activity detector over 24 kHz mono PCM16, in 10 ms windows.

Shared by the embedded server (its ``server_vad`` turns, its GPT-Live turns, its noise
gate) and the relay's own GPT-Live wake policy (:mod:`relay.protocol.live.wake`), so it
sits on the sans-I/O floor both stand on; it needs nothing but numpy.

The hosted service's ``server_vad`` runs a model; this one compares the RMS level of each
10 ms window against a level derived from the session's ``threshold``. The mapping is
linear in decibels relative to full scale::

    threshold_dbfs = -70 + 50 * threshold      # 0 → -70 dBFS, 0.5 → -45 dBFS, 1 → -20 dBFS

At the default 0.5 the voiced parts of normal speech (espeak-ng peaks around -10 to
-20 dBFS, its quietest consonants near -40 dBFS) are detected, while digital silence and
the self-noise of a quiet microphone (-60 dBFS and below) are not.

Speech starts once ``min_speech_ms`` of consecutive loud windows have been heard (so a
single click does not open a turn), and is reported as starting at the first of those
windows minus ``prefix_padding_ms``. Speech stops after ``silence_duration_ms`` of
consecutive quiet windows, and is reported as ending where that silence ends, as the
hosted service does (its ``audio_end_ms`` includes the silence).

All times are absolute: milliseconds of audio since the session started (samples / 24).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The voice APIs' PCM: 24 kHz mono, 16-bit (``relay.audio.RATE``/``SAMPLE_BYTES``, kept
#: here too so this floor imports nothing above it; a test holds them equal).
RATE = 24000
SAMPLE_BYTES = 2
SAMPLES_PER_MS = RATE // 1000
WINDOW_MS = 10
WINDOW_SAMPLES = WINDOW_MS * SAMPLES_PER_MS
WINDOW_BYTES = WINDOW_SAMPLES * SAMPLE_BYTES

#: dBFS reported for a window of digital silence (log of zero is undefined).
_FLOOR_DBFS = -120.0


def threshold_dbfs(threshold: float) -> float:
    """The RMS level in dBFS that a window must reach to count as speech, for a
    ``server_vad`` ``threshold`` in 0..1 (values outside are clamped)."""
    clamped = min(max(threshold, 0.0), 1.0)
    return -70.0 + 50.0 * clamped


def window_dbfs(window: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale."""
    samples = window.astype(np.float64)
    rms = float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0
    if rms <= 0.0:
        return _FLOOR_DBFS
    return max(20.0 * float(np.log10(rms / 32768.0)), _FLOOR_DBFS)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began; ``audio_start_ms`` already includes the prefix padding."""

    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Speech ended; ``audio_end_ms`` includes the trailing silence."""

    audio_end_ms: int


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Feed PCM16 bytes, get :class:`SpeechStarted` / :class:`SpeechStopped` back.

    ``start_sample`` is the absolute position of the first byte fed, so a detector
    rebuilt mid-session (new turn detection settings) keeps the session's clock.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        min_speech_ms: int = 30,
        start_sample: int = 0,
    ) -> None:
        self.threshold = threshold
        self.level_dbfs = threshold_dbfs(threshold)
        self.prefix_padding_ms = max(0, prefix_padding_ms)
        # Whole windows: a silence of 0 ms still needs one quiet window to be seen.
        self._silence_windows = max(1, -(-silence_duration_ms // WINDOW_MS))
        self._onset_windows = max(1, -(-min_speech_ms // WINDOW_MS))
        self._carry = b""
        self._sample = start_sample  # absolute sample index of the next window's start
        self._floor_sample = start_sample  # speech may not be reported before this
        self._in_speech = False
        self._loud_run = 0  # consecutive loud windows while not in speech
        self._quiet_run = 0  # consecutive quiet windows while in speech
        self._onset_sample = start_sample
        self._speech_start_ms = 0

    @property
    def in_speech(self) -> bool:
        """Whether speech has started and not yet stopped."""
        return self._in_speech

    @property
    def position_ms(self) -> int:
        """Absolute time of the end of the audio analysed so far."""
        return self._sample // SAMPLES_PER_MS

    def retain_from_ms(self) -> int:
        """The earliest audio time a future :class:`SpeechStarted` (or the current speech)
        can cover: audio before it will never be committed by this detector."""
        if self._in_speech:
            return self._speech_start_ms
        onset = self._onset_sample if self._loud_run else self._sample
        return self._padded_start_ms(onset)

    def reset(self) -> None:
        """Forget any speech in progress (the buffer was committed or cleared); the next
        speech cannot be reported as starting before the audio fed so far."""
        self._in_speech = False
        self._loud_run = 0
        self._quiet_run = 0
        self._floor_sample = self._sample + len(self._carry) // 2

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Analyse more audio (any length; partial windows wait for the rest)."""
        data = self._carry + pcm
        whole = len(data) // WINDOW_BYTES * WINDOW_BYTES
        self._carry = data[whole:]
        if not whole:
            return []
        windows = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, WINDOW_SAMPLES)
        events: list[VadEvent] = []
        for window in windows:
            event = self._window(window_dbfs(window) >= self.level_dbfs)
            if event is not None:
                events.append(event)
        return events

    def _window(self, loud: bool) -> VadEvent | None:
        start = self._sample
        self._sample += WINDOW_SAMPLES
        if not self._in_speech:
            if not loud:
                self._loud_run = 0
                return None
            if self._loud_run == 0:
                self._onset_sample = start
            self._loud_run += 1
            if self._loud_run < self._onset_windows:
                return None
            self._in_speech = True
            self._quiet_run = 0
            self._speech_start_ms = self._padded_start_ms(self._onset_sample)
            return SpeechStarted(self._speech_start_ms)
        if loud:
            self._quiet_run = 0
            return None
        self._quiet_run += 1
        if self._quiet_run < self._silence_windows:
            return None
        self._in_speech = False
        self._loud_run = 0
        end_ms = self._sample // SAMPLES_PER_MS
        self._floor_sample = self._sample
        return SpeechStopped(end_ms)

    def _padded_start_ms(self, onset_sample: int) -> int:
        onset_ms = onset_sample // SAMPLES_PER_MS
        floor_ms = -(-self._floor_sample // SAMPLES_PER_MS)
        return max(onset_ms - self.prefix_padding_ms, floor_ms, 0)
