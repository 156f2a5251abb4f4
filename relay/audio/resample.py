"""Uplink audio: decoded WebRTC frames → 24 kHz mono PCM16, cut into fixed-size chunks;
and :func:`resample_pcm`, for a whole buffer at once (the local server's speech).

One :class:`Uplink` lives as long as its call, so the resampler's filter state carries
across frame edges (no clicks) and sample accounting is exact: over a call, the samples
emitted equal 24 000 × the seconds of audio fed, give or take the resampler's delay,
which :meth:`Uplink.flush` releases at the end.

The resampler holds back a few samples (its filter delay), so a frame never yields quite
a whole frame of output. Chunks cut at exactly N ms would then wait for the next frame to
top them up, adding a whole frame (20 ms) of latency to every chunk. A chunk is therefore
sent once it is within :data:`SLACK_MS` of full: durations vary by those few samples, and
every sample is still sent exactly once, in order.
"""

from __future__ import annotations

import av
import numpy as np

from . import RATE, SAMPLE_BYTES

#: A chunk this close to its nominal duration is sent rather than held for the next frame.
SLACK_MS = 2


class Uplink:
    """Resample frames of any rate and layout to 24 kHz mono s16 and chunk them."""

    def __init__(self, chunk_ms: int) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.chunk_bytes = RATE * chunk_ms // 1000 * SAMPLE_BYTES
        self._ready_bytes = self.chunk_bytes - RATE * SLACK_MS // 1000 * SAMPLE_BYTES
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._pending = bytearray()
        #: Samples of input fed, at their own rate, and the total duration fed in seconds.
        self.seconds_in = 0.0
        #: Samples emitted at 24 kHz (in chunks, and by :meth:`flush`).
        self.samples_out = 0

    def feed(self, frame: av.AudioFrame) -> list[bytes]:
        """Feed one decoded frame; return the whole chunks now ready (often none)."""
        self.seconds_in += frame.samples / frame.sample_rate
        # The resampler keys its output timestamps off the input's; aiortc's pts can jump
        # after loss, which would make PyAV pad or drop. We count samples ourselves.
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._pending += _plane_bytes(out)
        return self._take_chunks()

    def feed_pcm(self, pcm: bytes) -> list[bytes]:
        """Feed audio that is already 24 kHz mono PCM16 (libopus decodes straight to it);
        return the whole chunks now ready. It bypasses the resampler, so a call feeds one
        kind or the other (a codec switch mid-call may shift a few samples)."""
        self.seconds_in += len(pcm) / SAMPLE_BYTES / RATE
        self._pending += pcm
        return self._take_chunks()

    def flush(self) -> bytes:
        """Release the resampler's delay and whatever partial chunk remains."""
        for out in self._resampler.resample(None):
            self._pending += _plane_bytes(out)
        rest = bytes(self._pending)
        self._pending.clear()
        self.samples_out += len(rest) // SAMPLE_BYTES
        return rest

    def _take_chunks(self) -> list[bytes]:
        chunks = []
        while len(self._pending) >= self._ready_bytes:
            size = min(self.chunk_bytes, len(self._pending))
            chunks.append(bytes(self._pending[:size]))
            del self._pending[:size]
            self.samples_out += size // SAMPLE_BYTES
        return chunks


def _plane_bytes(frame: av.AudioFrame) -> bytes:
    # Plane buffers may be padded past the samples they hold: take only the audio.
    return bytes(frame.planes[0])[: frame.samples * SAMPLE_BYTES]


def resample_pcm(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """A whole mono PCM16 buffer at ``from_rate`` resampled to ``to_rate`` (the filter's
    tail flushed, so nothing is held back)."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // SAMPLE_BYTES * SAMPLE_BYTES], dtype="<i2")
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    return b"".join(_plane_bytes(out) for out in [*resampler.resample(frame),
                                                   *resampler.resample(None)])
