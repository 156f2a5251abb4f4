"""What the headless client speaks and hears: a PCM microphone track, WAV files in and out.

Everything is 24 kHz mono PCM16, the Realtime API's audio format.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import FRAME_BYTES, FRAME_SAMPLES, RATE
from ..audio.encode import pcm_frame
from ..audio.resample import Uplink


class PcmSource(MediaStreamTrack):
    """A microphone made of 24 kHz mono PCM16: plays ``pcm`` in real time, then silence.

    More audio can be queued while it plays with :meth:`play`.
    """

    kind = "audio"

    def __init__(self, pcm: bytes = b"") -> None:
        super().__init__()
        self._queue = bytearray(pcm)
        self._index = 0
        self._start: float | None = None

    def play(self, pcm: bytes) -> None:
        """Queue ``pcm`` after what is already queued."""
        self._queue += pcm

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms frame, due at ``start + index * 20 ms`` (never drifts)."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * FRAME_SAMPLES / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = bytes(self._queue[:FRAME_BYTES])
        del self._queue[:FRAME_BYTES]
        frame = pcm_frame(chunk + bytes(FRAME_BYTES - len(chunk)), self._index)
        self._index += 1
        return frame


def read_wav(path: Path) -> bytes:
    """A WAV file of any rate and channel count as 24 kHz mono PCM16."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = wav.readframes(wav.getnframes())
    samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16",
                                       layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = rate
    uplink = Uplink(20)
    return b"".join(uplink.feed(frame)) + uplink.flush()


def write_wav(path: Path, pcm: bytes) -> None:
    """Write 24 kHz mono PCM16 as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
