"""Input noise reduction for the local server (``audio.input.noise_reduction``), sans-I/O.

The hosted service filters input audio "before it is sent to VAD and the model" to cut
false turn detections. This server does the same with a stationary-noise gate over 10 ms
windows of 24 kHz PCM16: it tracks the noise floor (the quietest window of the last
:data:`FLOOR_SECONDS`: steady noise is the floor within a window of its start, while speech,
which pauses, stays above it) and attenuates every window whose level lies within a margin
of that floor. ``near_field`` (a headset) uses a 6 dB margin; ``far_field`` (a laptop or room
microphone, which hears more of the room) 10 dB. ``strength`` scales the attenuation:
1 (the default) takes 30 dB off, 0 none, at most 60 dB.

A steady hum or fan at -35 dBFS, which an energy VAD at the default threshold (-45 dBFS)
would hear as endless speech, is taken down to silence; a voice 10 dB above it passes.
Audio is processed in whole windows, so up to 10 ms waits for the next append. The floor
comes from the audio itself: audio that starts loud and steady is taken for noise until
something quieter has been heard (a microphone hears its room before anyone speaks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...protocol.energy_vad import WINDOW_BYTES, WINDOW_SAMPLES, window_dbfs

#: The noise floor is the quietest window of this much recent audio.
FLOOR_SECONDS = 3.0
_FLOOR_WINDOWS = int(FLOOR_SECONDS * 24000 / WINDOW_SAMPLES)
#: Margin above the floor under which a window counts as noise, by microphone kind.
MARGIN_DB = {"near_field": 6.0, "far_field": 10.0}
#: Attenuation of noise windows at strength 1, and the most any strength takes off.
ATTENUATION_DB = 30.0
MAX_ATTENUATION_DB = 60.0


class NoiseReducer:
    """Feed input PCM16 with :meth:`process`; get it back with the noise gated down."""

    def __init__(self, kind: str, strength: float = 1.0) -> None:
        self.kind = kind
        self.margin_db = MARGIN_DB[kind]
        attenuation = min(max(strength, 0.0) * ATTENUATION_DB, MAX_ATTENUATION_DB)
        self._noise_gain = 10 ** (-attenuation / 20)
        #: (window index, level) of candidate minima, levels rising: the front is the floor.
        self._minima: deque[tuple[int, float]] = deque()
        self._index = 0
        self._carry = b""

    def process(self, pcm: bytes) -> bytes:
        """The whole 10 ms windows now available, noise attenuated (the rest waits)."""
        data = self._carry + pcm
        whole = len(data) // WINDOW_BYTES * WINDOW_BYTES
        self._carry = data[whole:]
        if not whole:
            return b""
        windows = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, WINDOW_SAMPLES)
        gains = np.array([self._gain(window_dbfs(window)) for window in windows])
        out = np.round(windows.astype(np.float64) * gains[:, None])
        return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())

    def _gain(self, level_db: float) -> float:
        """The gain of a window at ``level_db``, after taking it into the floor (a sliding
        minimum kept in a monotonic deque)."""
        minima = self._minima
        while minima and minima[-1][1] >= level_db:
            minima.pop()
        minima.append((self._index, level_db))
        while minima[0][0] <= self._index - _FLOOR_WINDOWS:
            minima.popleft()
        self._index += 1
        floor = minima[0][1]
        return self._noise_gain if level_db < floor + self.margin_db else 1.0


def reducer_for(setting: Any) -> NoiseReducer | None:
    """The filter a (checked) ``noise_reduction`` setting asks for, or None when it is off."""
    if not isinstance(setting, Mapping):
        return None
    strength = setting.get("strength")
    return NoiseReducer(str(setting["type"]),
                        float(strength) if isinstance(strength, int | float) else 1.0)
