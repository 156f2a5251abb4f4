"""Inbound audio: RTP payloads as they arrive → 24 kHz mono PCM16 chunks for the upstream.

The relay decodes the peer's audio itself instead of through aiortc's receive track. That
track delays audio by a playout jitter buffer (about 80 ms: four packets of prefetch),
decodes on a worker thread and hands every frame back across threads, and decodes Opus to
48 kHz *stereo*. A playout buffer smooths jitter for a listener; the model is not one: it
takes audio as fast as it comes. So here packets are decoded in sequence order the moment
they can be, in mono, with only what out-of-order delivery needs:

* a packet after a gap is held until the gap fills or the gap is :attr:`InboundAudio.reorder`
  seconds old (counted from the arrival of the first packet beyond it): a window in time,
  not in packets, because a jittery mobile link displaces packets by tens of milliseconds
  whatever their number. On a clean link nothing is ever held, so nothing waits;
* then the missing packets count as lost and each is replaced by audio of its own length
  (bounded by :data:`MAX_CONCEAL_PACKETS`), so the audio timeline the upstream sees stays
  aligned with the peer's: for Opus, the one just before the next packet is rebuilt from
  that packet's in-band FEC copy where the browser sent one, and the others are concealed
  by libopus (:mod:`relay.audio.opus`); for other codecs, or without libopus, silence;
* a packet older than one already decoded, or a duplicate, is dropped;
* a payload the decoder rejects is counted and skipped, never fatal.

Time comes in from the caller (``now``, in seconds on any monotonic clock), and a caller
that holds packets asks :attr:`InboundAudio.deadline` when to call :meth:`InboundAudio.expire`
if nothing else arrives. Decoded audio goes through one :class:`~relay.audio.resample.Uplink`
for the call, which resamples to 24 kHz mono (Opus from libopus already is) and cuts chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

from . import OPUS_RATE, RATE
from .opus import OpusDecoder, OpusError, has_fec, load_libopus, packet_samples
from .resample import Uplink

#: Decoders for every audio codec aiortc negotiates, by lower-case MIME type: (FFmpeg
#: decoder, the rate it decodes at). libopus always decodes at 48 kHz in FFmpeg; G.722
#: is 16 kHz audio although its RTP clock says 8000.
DECODERS: Mapping[str, tuple[str, int]] = {
    "audio/opus": ("libopus", OPUS_RATE),
    "audio/g722": ("g722", 16000),
    "audio/pcmu": ("pcm_mulaw", 8000),
    "audio/pcma": ("pcm_alaw", 8000),
}
#: How long a gap may wait for its missing packet, by default, in milliseconds (the
#: ``uplink_reorder_ms`` setting). Simulated with netem's model (5% loss, each packet
#: delayed 40 ms ± jitter, 1% sent at once), the share of packets that came too late:
#: ±30 ms jitter: 22.5% with no window, 0.6% at 20 ms, 0.03% at 40, 0.02% at 60 (the
#: call's very first packet, overtaken); ±50 ms: 8.2% at 20, 2.2% at 40, 0.2% at 60,
#: 0.02% at 80. 60 ms catches a 30 ms jitter whole; only a lossy link ever waits for it.
REORDER_MS = 60
#: However young the gap, at most this many packets are held behind it (a memory bound).
MAX_HELD_PACKETS = 50
#: At most this many lost packets are replaced at one gap; beyond that the peer paused
#: or jumped, and the upstream simply gets the audio that comes next.
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
    #: Lost packets rebuilt from the next packet's in-band FEC.
    recovered: int = 0
    #: Lost packets replaced by concealment or silence.
    concealed: int = 0
    undecodable: int = 0
    unknown_payload: int = 0


class InboundAudio:
    """Decode one peer's RTP audio stream into 24 kHz mono chunks, in sequence order.

    Once negotiated, give it the payload types with :meth:`set_codecs`; then feed every
    packet to :meth:`packet`, which returns the chunks that became ready, and call
    :meth:`expire` at :attr:`deadline` when one is set.
    """

    def __init__(self, chunk_ms: int, reorder_ms: int = REORDER_MS, *,
                 use_libopus: bool = True) -> None:
        self._codecs: dict[int, str] = {}
        self._decoders: dict[int, AudioCodecContext | OpusDecoder] = {}
        self._libopus = load_libopus() if use_libopus else None
        self.uplink = Uplink(chunk_ms)
        #: The reorder window, in seconds.
        self.reorder = reorder_ms / 1000
        self.stats = InboundStats()
        self._expected: int | None = None
        #: Held packets by sequence number: (payload type, payload, arrival time).
        self._held: dict[int, tuple[int, bytes, float]] = {}
        # Samples (at the decoder's rate) of the last decoded frame: the length of silence
        # that stands in for one lost packet where the codec cannot say.
        self._last_samples = 0
        self._last_rate = 0

    @property
    def fec(self) -> bool:
        """Whether lost Opus packets can be rebuilt from FEC (libopus was found)."""
        return self._libopus is not None

    @property
    def deadline(self) -> float | None:
        """When the oldest gap must be given up if nothing arrives (None: nothing held)."""
        if not self._held:
            return None
        return min(arrived for _, _, arrived in self._held.values()) + self.reorder

    def set_codecs(self, codecs: Mapping[int, str]) -> None:
        """The negotiated payload types and their MIME types (``audio/opus`` …)."""
        self._codecs = {pt: mime.lower() for pt, mime in codecs.items()
                        if mime.lower() in DECODERS}

    def packet(self, payload_type: int, sequence: int, payload: bytes,
               now: float) -> list[bytes]:
        """Take one RTP packet's payload, arrived at ``now``; return the uplink chunks now
        ready, in order."""
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
        self._held[sequence] = (payload_type, payload, now)
        chunks += self._release_ready()
        return chunks + self.expire(now)

    def expire(self, now: float) -> list[bytes]:
        """Give up the gaps whose window has passed by ``now``; the chunks that releases."""
        chunks: list[bytes] = []
        while self._held and (len(self._held) > MAX_HELD_PACKETS
                              or (self.deadline or 0.0) <= now):
            chunks += self._skip_gap()
        return chunks

    def flush(self) -> bytes:
        """At the end of the call: decode what is held and release the resampler's tail."""
        chunks = self._release_all()
        return b"".join(chunks) + self.uplink.flush()

    def close(self) -> None:
        """Free the decoders."""
        for decoder in self._decoders.values():
            if isinstance(decoder, OpusDecoder):
                decoder.close()
        self._decoders.clear()

    # ----------------------------------------------------------------- internals

    def _release_ready(self) -> list[bytes]:
        chunks: list[bytes] = []
        assert self._expected is not None
        while self._expected in self._held:
            payload_type, payload, _ = self._held.pop(self._expected)
            chunks += self._decode(payload_type, payload)
            self._expected = (self._expected + 1) & 0xFFFF
        return chunks

    def _skip_gap(self) -> list[bytes]:
        assert self._expected is not None
        expected = self._expected
        first = min(self._held, key=lambda seq: _seq_distance(expected, seq))
        missing = _seq_distance(expected, first)
        self.stats.lost += missing
        payload_type, payload, _ = self._held[first]
        chunks = self._replace_lost(missing, payload_type, payload)
        self._expected = first
        return chunks + self._release_ready()

    def _release_all(self) -> list[bytes]:
        chunks: list[bytes] = []
        while self._held:
            chunks += self._skip_gap()
        return chunks

    def _decoder_for(self, payload_type: int) -> AudioCodecContext | OpusDecoder:
        decoder = self._decoders.get(payload_type)
        if decoder is None:
            mime = self._codecs[payload_type]
            if mime == "audio/opus" and self._libopus is not None:
                decoder = OpusDecoder(self._libopus, RATE)
            else:
                decoder = _decoder(mime)
            self._decoders[payload_type] = decoder
        return decoder

    def _decode(self, payload_type: int, payload: bytes) -> list[bytes]:
        decoder = self._decoder_for(payload_type)
        if isinstance(decoder, OpusDecoder):
            try:
                pcm = decoder.decode(payload)
            except OpusError:
                self.stats.undecodable += 1
                return []
            self.stats.decoded += 1
            return self.uplink.feed_pcm(pcm)
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

    def _replace_lost(self, missing: int, payload_type: int, after: bytes) -> list[bytes]:
        """Audio for ``missing`` lost packets just before ``after`` (the next that came)."""
        count = min(missing, MAX_CONCEAL_PACKETS)
        if count <= 0:
            return []
        decoder = self._decoder_for(payload_type) if payload_type in self._codecs else None
        if not isinstance(decoder, OpusDecoder):
            return self._silence(count)
        samples = packet_samples(after, RATE)
        if not samples:
            return self._silence(count)
        chunks: list[bytes] = []
        try:
            for _ in range(count - 1):
                chunks += self.uplink.feed_pcm(decoder.conceal(samples))
            # The packet just before ``after`` only: its FEC copy rides in ``after``.
            fec = count == missing and has_fec(after)
            chunks += self.uplink.feed_pcm(decoder.recover(after, samples))
        except OpusError:
            self.stats.undecodable += 1
            return chunks
        self.stats.recovered += int(fec)
        self.stats.concealed += count - int(fec)
        return chunks

    def _silence(self, packets: int) -> list[bytes]:
        if not self._last_samples:
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
