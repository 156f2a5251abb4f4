"""Audio tracks: the paced outbound playout track, and the inbound microphone pump.

aiortc *pulls* outbound media: its sender awaits ``track.recv()`` and sends at once, so the
track itself must wait until each frame is due. Deadlines are absolute
(``start + n × 20 ms``) so pacing never drifts; after a stall the clock is re-anchored
instead of catching up, so the peer never gets a burst.

When the peer negotiated Opus, the track encodes itself (24 kHz mono, libopus) and hands
aiortc ready packets. aiortc then skips its own encoder — which would resample to 48 kHz
stereo and encode at 96 kbit/s on a worker thread — and its pure-Python audio-level loop
over every sample. For G.711 peers it returns frames and aiortc encodes them.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import FRAME_SAMPLES, FRAME_SECONDS, OPUS_RATE, RATE
from ..audio.encode import EncoderStats, OpusEncoder, pcm_frame

logger = logging.getLogger(__name__)

#: Falling this far behind schedule re-anchors the clock rather than bursting.
MAX_LATE = 3 * FRAME_SECONDS
# aiortc's Opus packetizer converts a packet's pts to its 48 kHz RTP clock with Fraction
# arithmetic unless the packet is already stamped in 48 kHz units: stamp it so.
_RTP_TIME_BASE = fractions.Fraction(1, OPUS_RATE)


class PlayoutTrack(MediaStreamTrack):
    """An outbound audio track that plays 20 ms frames pulled from ``source`` in real time.

    ``source`` returns 24 kHz mono PCM16 (silence when it has nothing); ``after`` runs
    once each frame has been handed to aiortc, so events about it can go out at once.
    """

    kind = "audio"

    def __init__(
        self,
        source: Callable[[], bytes],
        after: Callable[[], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._after = after
        self._clock = clock or asyncio.get_running_loop().time
        self._start: float | None = None
        self._index = 0
        self._opus: OpusEncoder | None = None
        #: Times the clock was re-anchored after a stall.
        self.reanchors = 0

    def encode_opus(self, encoder: OpusEncoder) -> None:
        """From now on return Opus packets from ``encoder``."""
        self._opus = encoder

    @property
    def encoder_stats(self) -> EncoderStats | None:
        """Frames the Opus encoder was given and actually ran for (None: not encoding)."""
        return self._opus.stats if self._opus is not None else None

    @property
    def encodes_opus(self) -> bool:
        """True once the track hands out Opus packets (see :meth:`encode_opus`)."""
        return self._opus is not None

    def due(self, now: float) -> float:
        """When the next frame is due on the track's clock; the first call starts it."""
        if self._start is None:
            self._start = now
        return self._start + self._index * FRAME_SECONDS

    def take_opus(self, now: float) -> tuple[bytes, int]:
        """The next frame as an Opus packet, and its RTP timestamp (48 kHz, from 0).

        For a sender that keeps the pacing itself: call it at :meth:`due`, then
        :meth:`frame_sent` once the packet is on its way. Needs :meth:`encode_opus`.
        """
        assert self._opus is not None
        index = self._advance(now)
        return self._opus.encode(self._source()), index * FRAME_SAMPLES * (OPUS_RATE // RATE)

    def frame_sent(self) -> None:
        """A frame has left: events about it may go out now."""
        if self._after is not None:
            self._after()

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        """Wait until the next frame is due, then return it."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        due = self.due(now)
        if now < due:
            await asyncio.sleep(due - now)
        out: av.AudioFrame | av.Packet[Any]
        if self._opus is not None:
            payload, timestamp = self.take_opus(now)
            # Stamped with our own clock, so RTP timestamps follow the pacing exactly.
            out = av.Packet(payload)
            out.pts = timestamp
            out.time_base = _RTP_TIME_BASE
        else:
            out = pcm_frame(self._source(), self._advance(now))
        self.frame_sent()
        return out

    def _advance(self, now: float) -> int:
        """The index of the frame due now, skipping those missed in a stall."""
        due = self.due(now)
        if now - due > MAX_LATE:
            # Skip the missed frames' timestamps (the peer conceals the gap) but not their
            # audio: nothing is lost, and nothing arrives in a burst.
            self._index += int((now - due) / FRAME_SECONDS)
            self.reanchors += 1
        index = self._index
        self._index += 1
        return index


async def pump_inbound(track: MediaStreamTrack, on_frame: Callable[[av.AudioFrame], None]) -> None:
    """Feed every frame the peer sends on ``track`` to ``on_frame`` until the track ends."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        assert isinstance(frame, av.AudioFrame)
        on_frame(frame)
