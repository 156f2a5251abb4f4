"""Inbound audio: RTP payloads as they arrive → 24 kHz mono PCM16 chunks for the upstream.

The relay decodes the peer's audio itself instead of through aiortc's receive track. That
track delays audio by a playout jitter buffer (about 80 ms: four packets of prefetch),
decodes on a worker thread and hands every frame back across threads, and decodes Opus to
48 kHz *stereo*. A playout buffer smooths jitter for a listener; the model is not one: it
takes audio as fast as it comes. So here packets are decoded in sequence order the moment
they can be, in mono, with only what out-of-order delivery needs:

* a packet after a gap is held until the gap fills or :attr:`InboundAudio.reorder`
  later packets have arrived; then the missing packets count as lost and are replaced by
  silence of the same length (bounded by :data:`MAX_CONCEAL_PACKETS`), so the audio
  timeline the upstream sees stays aligned with the peer's;
* a packet older than one already decoded, or a duplicate, is dropped;
* a payload the decoder rejects is counted and skipped, never fatal.

Decoded frames go through one :class:`~relay.audio.resample.Uplink` for the call, which
resamples to 24 kHz mono and cuts the chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

from .resample import Uplink

#: Decoders for every audio codec aiortc negotiates, by lower-case MIME type: (FFmpeg
#: decoder, the rate it decodes at). libopus always decodes at 48 kHz in FFmpeg; G.722
#: is 16 kHz audio although its RTP clock says 8000.
DECODERS: Mapping[str, tuple[str, int]] = {
    "audio/opus": ("libopus", 48000),
    "audio/g722": ("g722", 16000),
    "audio/pcmu": ("pcm_mulaw", 8000),
    "audio/pcma": ("pcm_alaw", 8000),
}
#: Packets after a gap held back, waiting for the missing one, before it counts as lost.
REORDER_PACKETS = 2
#: At most this many lost packets are replaced by silence at one gap; beyond that the
#: peer paused or jumped, and the upstream simply gets the audio that comes next.
MAX_CONCEAL_PACKETS = 10
#: A sequence jump this large (forward or back) is a new stream, not a gap or a late packet.
RESYNC_DISTANCE = 1000


@dataclass
class InboundStats:
    """Counters of what arrived and what became of it."""

    packets: int = 0
    decoded: int = 0
    late: int = 0
    lost: int = 0
    concealed: int = 0
    undecodable: int = 0
    unknown_payload: int = 0


class InboundAudio:
    """Decode one peer's RTP audio stream into 24 kHz mono chunks, in sequence order.

    Once negotiated, give it the payload types with :meth:`set_codecs`; then feed every
    packet to :meth:`packet`, which returns the chunks that became ready.
    """

    def __init__(self, chunk_ms: int, reorder: int = REORDER_PACKETS) -> None:
        self._codecs: dict[int, str] = {}
        self._decoders: dict[int, AudioCodecContext] = {}
        self.uplink = Uplink(chunk_ms)
        self.reorder = reorder
        self.stats = InboundStats()
        self._expected: int | None = None
        self._held: dict[int, tuple[int, bytes]] = {}
        # Samples (at the decoder's rate) of the last decoded frame: the length of silence
        # that stands in for one lost packet.
        self._last_samples = 0
        self._last_rate = 0

    def set_codecs(self, codecs: Mapping[int, str]) -> None:
        """The negotiated payload types and their MIME types (``audio/opus`` …)."""
        self._codecs = {pt: mime.lower() for pt, mime in codecs.items()
                        if mime.lower() in DECODERS}

    def packet(self, payload_type: int, sequence: int, payload: bytes) -> list[bytes]:
        """Take one RTP packet's payload; return the uplink chunks now ready, in order."""
        self.stats.packets += 1
        if payload_type not in self._codecs:
            self.stats.unknown_payload += 1
            return []
        if self._expected is None:
            self._expected = sequence
        distance = _seq_distance(self._expected, sequence)
        if abs(distance) >= RESYNC_DISTANCE:
            # A restarted or jumped stream: whatever was held belongs to the old one.
            chunks = self._release_all()
            self._expected = sequence
            distance = 0
        else:
            chunks = []
        if distance < 0 or sequence in self._held:
            self.stats.late += 1
            return chunks
        self._held[sequence] = (payload_type, payload)
        chunks += self._release_ready()
        if len(self._held) > self.reorder:
            chunks += self._skip_gap()
        return chunks

    def flush(self) -> bytes:
        """At the end of the call: decode what is held and release the resampler's tail."""
        chunks = self._release_all()
        return b"".join(chunks) + self.uplink.flush()

    # ----------------------------------------------------------------- internals

    def _release_ready(self) -> list[bytes]:
        chunks: list[bytes] = []
        assert self._expected is not None
        while self._expected in self._held:
            payload_type, payload = self._held.pop(self._expected)
            chunks += self._decode(payload_type, payload)
            self._expected = (self._expected + 1) & 0xFFFF
        return chunks

    def _skip_gap(self) -> list[bytes]:
        assert self._expected is not None
        expected = self._expected
        first = min(self._held, key=lambda seq: _seq_distance(expected, seq))
        missing = _seq_distance(expected, first)
        self.stats.lost += missing
        chunks = self._conceal(min(missing, MAX_CONCEAL_PACKETS))
        self._expected = first
        return chunks + self._release_ready()

    def _release_all(self) -> list[bytes]:
        chunks: list[bytes] = []
        while self._held:
            chunks += self._skip_gap()
        return chunks

    def _decode(self, payload_type: int, payload: bytes) -> list[bytes]:
        decoder = self._decoders.get(payload_type)
        if decoder is None:
            decoder = self._decoders[payload_type] = _decoder(self._codecs[payload_type])
        chunks: list[bytes] = []
        try:
            for frame in decoder.decode(av.Packet(payload)):
                # (The resampler refuses a frame of another rate: a mid-call codec switch.)
                chunks += self.uplink.feed(frame)
                self.stats.decoded += 1
                self._last_samples, self._last_rate = frame.samples, frame.sample_rate
        except (av.FFmpegError, ValueError):
            self.stats.undecodable += 1
        return chunks

    def _conceal(self, packets: int) -> list[bytes]:
        if packets <= 0 or not self._last_samples:
            return []
        self.stats.concealed += packets
        silence = np.zeros((1, self._last_samples * packets), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
        frame.sample_rate = self._last_rate
        return self.uplink.feed(frame)


def _decoder(mime: str) -> AudioCodecContext:
    name, rate = DECODERS[mime]
    decoder = av.CodecContext.create(name, "r")
    assert isinstance(decoder, AudioCodecContext)
    decoder.sample_rate = rate
    decoder.layout = "mono"  # a stereo Opus stream is downmixed by the decoder itself
    return decoder


def _seq_distance(start: int, sequence: int) -> int:
    """How many packets ``sequence`` is after ``start`` (negative: before), modulo 2^16."""
    return ((sequence - start + 0x8000) & 0xFFFF) - 0x8000
