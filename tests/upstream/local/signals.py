"""Synthetic 24 kHz PCM16 test signals for the local server's tests."""

from __future__ import annotations

import numpy as np

from relay.audio import RATE
from relay.upstream.local.conversation import BYTES_PER_MS


def tone(ms: int, dbfs: float = -20.0, freq: float = 220.0) -> bytes:
    """A sine whose RMS level is ``dbfs``."""
    t = np.arange(ms * RATE // 1000) / RATE
    amplitude = 10 ** (dbfs / 20) * 32768 * np.sqrt(2)
    return bytes((np.sin(2 * np.pi * freq * t) * amplitude).astype("<i2").tobytes())


def noise(ms: int, dbfs: float, seed: int = 1) -> bytes:
    """Gaussian noise whose RMS level is ``dbfs``."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(ms * RATE // 1000) * 10 ** (dbfs / 20) * 32768
    return bytes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())


def silence(ms: int) -> bytes:
    """Digital silence."""
    return bytes(ms * BYTES_PER_MS)


def chunks(pcm: bytes, ms: int = 40) -> list[bytes]:
    """``pcm`` cut into ``ms`` pieces (the last may be shorter)."""
    size = ms * BYTES_PER_MS
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]
