"""Helpers of the recording tests: a timed microphone, a click train, reading recordings."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from relay.client import PcmSource

RATE = 24000
FRAME = 480


class TimedSource(PcmSource):
    """A :class:`PcmSource` that notes when it handed each frame to aiortc
    (``time.monotonic()``), by frame index."""

    def __init__(self, pcm: bytes = b"") -> None:
        super().__init__(pcm)
        self.sent_at: list[float] = []

    def play_now(self, pcm: bytes) -> int:
        """Play ``pcm`` next (nothing else queued); returns the index of its first frame."""
        self.play(pcm)
        return len(self.sent_at)

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.sent_at.append(time.monotonic())
        return frame


def click_train(count: int, period: float = 0.5, click_ms: int = 10) -> bytes:
    """``count`` clicks (a 1 kHz burst of ``click_ms``), each at the start of a 20 ms frame,
    ``period`` apart, then silence."""
    period_samples = int(period * RATE) // FRAME * FRAME
    out = np.zeros(count * period_samples, dtype=np.float64)
    n = RATE * click_ms // 1000
    burst = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / RATE)
    for i in range(count):
        out[i * period_samples:i * period_samples + n] = burst
    return (out * 32767).astype("<i2").tobytes()


def onsets(x: np.ndarray, rate: int, threshold: float, refractory: float = 0.2) -> list[float]:
    """Times (s) where ``|x|`` first rises above ``threshold``, at least ``refractory``
    apart."""
    above = np.flatnonzero(np.abs(x) > threshold)
    times: list[float] = []
    for index in above:
        t = index / rate
        if not times or t - times[-1] >= refractory:
            times.append(t)
    return times


def read_audio(path: Path | bytes) -> tuple[int, np.ndarray]:
    """A recording's audio: (rate, samples × 2 float array in [-1, 1])."""
    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    parts = []
    rate = 48000
    with av.open(source) as container:
        for frame in container.decode(audio=0):
            rate = frame.sample_rate
            x = frame.to_ndarray()
            if frame.format.is_planar:
                x = x.T
            else:
                x = x.reshape(-1, 2)
            if not frame.format.name.startswith("flt"):
                x = x / 32768.0
            parts.append(x.astype(np.float64))
    return rate, (np.concatenate(parts) if parts else np.zeros((0, 2)))


def unzip(body: bytes) -> dict[str, bytes]:
    """The files of a recording's zip, by name."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def until(predicate: Callable[[], bool], timeout: float,
                what: str = "condition") -> None:
    """Wait until ``predicate()`` is true (polling), or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
