"""Outbound audio: 24 kHz mono PCM16 frames → av frames, and → Opus packets.

Encoding is one of the largest costs of a call (scripts/bench: about a quarter of the
relay's CPU in the hybrid 'voip' mode, an eighth in the CELT-only default), and most of
a real call's downlink is the silence between the model's turns. libopus, fed digital
silence, settles within a few hundred milliseconds into encoding every frame to the same
small packet (it still revises it now and then, a few bits in a long silence). From the
moment a silent frame encodes to the same packet as the one before, :class:`OpusEncoder`
repeats that packet instead of running the encoder, until audio comes back. The peer
decodes the same digital silence, and the speech after it scores within 0.04 PESQ-WB of
never skipping (four espeak voices, both modes).
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
from av.audio.codeccontext import AudioCodecContext

from . import (
    DEFAULT_OPUS_APPLICATION,
    DEFAULT_OPUS_BITRATE,
    DEFAULT_OPUS_COMPLEXITY,
    FRAME_BYTES,
    FRAME_SAMPLES,
    RATE,
)
from .opus import LibopusEncoder, load_libopus

TIME_BASE = fractions.Fraction(1, RATE)
_SILENCE = bytes(FRAME_BYTES)

#: Measured by scripts/opus-quality (six espeak voices, 24 kHz mono, 20 ms frames; PESQ-WB
#: of the decoded speech; encode CPU time per frame, one run on a shared machine, so
#: compare within the column):
#:
#: ==========  =======  ==========  ============  ======  =======
#: mode        kbit/s   complexity  PESQ-WB mean  min     encode
#: ==========  =======  ==========  ============  ======  =======
#: voip        32       10          4.04          3.81    437 µs
#: voip        32       6           3.92          3.69    368 µs
#: voip        40       10          4.19          4.01    448 µs
#: audio       32       10          4.07          3.88    456 µs
#: lowdelay    40       10          4.07          3.80    182 µs
#: lowdelay    48       10          4.23          4.07    171 µs
#: lowdelay    48       5           4.10          4.05    162 µs
#: lowdelay    64       10          4.40          4.30    238 µs
#: ==========  =======  ==========  ============  ======  =======
#:
#: 'lowdelay' is Opus' CELT-only mode: at 48 kbit/s it scores better than the hybrid
#: 'voip' mode at 32 and costs 60% less to encode (and 4 ms less codec delay), for
#: 16 kbit/s more per call. Those are the defaults (relay/audio/__init__.py); all three
#: are settings.


def pcm_frame(pcm: bytes, index: int) -> av.AudioFrame:
    """Frame number ``index`` of a 24 kHz mono stream: 20 ms of PCM16 ``pcm``, with pts."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
    frame.planes[0].update(pcm)
    frame.sample_rate = RATE
    frame.pts = index * FRAME_SAMPLES
    frame.time_base = TIME_BASE
    return frame


@dataclass
class EncoderStats:
    """Frames in, and how many of them ran the encoder."""

    frames: int = 0
    encoded: int = 0


class OpusEncoder:
    """Encode 20 ms frames of 24 kHz mono PCM16 to Opus, skipping the work in silence.

    libopus is called directly where it is found (:class:`relay.audio.opus.LibopusEncoder`,
    the same packets for less CPU), else through PyAV; ``use_libopus=False`` forces PyAV.
    """

    def __init__(self, bitrate: int = DEFAULT_OPUS_BITRATE,
                 complexity: int = DEFAULT_OPUS_COMPLEXITY,
                 application: str = DEFAULT_OPUS_APPLICATION, *,
                 use_libopus: bool = True) -> None:
        lib = load_libopus() if use_libopus else None
        self._direct: LibopusEncoder | None = None
        self._codec: AudioCodecContext | None = None
        if lib is not None:
            self._direct = LibopusEncoder(lib, RATE, application=application,
                                          bitrate=bitrate, complexity=complexity)
        else:
            codec = av.CodecContext.create("libopus", "w")
            assert isinstance(codec, AudioCodecContext)
            codec.sample_rate = RATE
            codec.layout = "mono"
            codec.format = "s16"
            codec.bit_rate = bitrate
            codec.time_base = TIME_BASE
            # 20 ms matches the frames the track paces.
            codec.options = {"application": application, "frame_duration": "20",
                             "compression_level": str(complexity)}
            self._codec = codec
        self._index = 0
        # The packet the last silent frame encoded to, and whether the encoder has
        # reached its fixed point (two silent frames in a row, the same packet).
        self._silent_packet: bytes | None = None
        self._settled = False
        self.stats = EncoderStats()

    @property
    def direct(self) -> bool:
        """Whether libopus is called directly (not through PyAV)."""
        return self._direct is not None

    def encode(self, pcm: bytes) -> bytes:
        """The Opus packet for one 20 ms frame of PCM16 (``FRAME_BYTES`` long)."""
        self.stats.frames += 1
        index = self._index
        self._index += 1
        silent = pcm == _SILENCE
        if silent and self._settled:
            assert self._silent_packet is not None
            return self._silent_packet
        if self._direct is not None:
            payload = self._direct.encode(pcm)
        else:
            assert self._codec is not None
            # libopus gives exactly one packet per 20 ms frame.
            [packet] = self._codec.encode(pcm_frame(pcm, index))
            payload = bytes(packet)
        self.stats.encoded += 1
        if silent:
            self._settled = payload == self._silent_packet
            self._silent_packet = payload
        else:
            self._silent_packet = None
            self._settled = False
        return payload
