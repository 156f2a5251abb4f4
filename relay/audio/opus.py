"""libopus itself, through ctypes: decoding the peer's Opus (in-band FEC, packet-loss
concealment) and encoding the downlink.

FFmpeg's Opus decoders (which PyAV wraps) decode packets that arrived and nothing else:
they cannot ask libopus to rebuild a lost packet from the redundant copy (LBRR) that a
browser sends in the next one (``useinbandfec=1``, on by default in every browser), nor
to conceal a loss from the decoder's own history. :class:`OpusDecoder` calls libopus
through ctypes for both, and decodes straight to the upstream's 24 kHz mono, so Opus
needs no resampling at all.

:class:`LibopusEncoder` is the encoder FFmpeg's ``libopus`` wrapper would run, with the same
settings (:data:`ENCODER_CTLS`), so its packets are the same bytes; called directly it
skips building an ``av.AudioFrame`` and an ``av.Packet`` per 20 ms and FFmpeg's frame
queue (scripts/bench: about a fifth of the encode's CPU).

libopus is the one PyAV's wheel ships (where it is there, as in the manylinux wheels), or
else the system's (Debian's ``libopus0``). :func:`load_libopus` returns None when neither
is found, and the relay then decodes and encodes with PyAV and conceals with silence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from pathlib import Path

import av

from . import OPUS_RATE

logger = logging.getLogger(__name__)

#: The longest Opus packet: 120 ms.
MAX_PACKET_MS = 120
OPUS_OK = 0
#: libopus' application constants, by the names FFmpeg's option uses.
APPLICATIONS = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
#: The room FFmpeg gives one encoded packet (three 20 ms frames of 1275 bytes, and framing).
MAX_ENCODED_BYTES = 1275 * 3 + 7
#: The encoder settings FFmpeg's ``libopus`` wrapper makes, beyond bit rate and complexity,
#: with its defaults (``vbr=on``, ``packet_loss=0``, ``fec=0``, ``dtx=0``,
#: ``apply_phase_inv=1``): (request, value) pairs of ``opus_encoder_ctl``.
ENCODER_CTLS = (
    (4006, 1),  # OPUS_SET_VBR
    (4020, 0),  # OPUS_SET_VBR_CONSTRAINT
    (4014, 0),  # OPUS_SET_PACKET_LOSS_PERC
    (4012, 0),  # OPUS_SET_INBAND_FEC
    (4016, 0),  # OPUS_SET_DTX
    (4046, 0),  # OPUS_SET_PHASE_INVERSION_DISABLED
)
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010


@functools.cache
def load_libopus() -> ctypes.CDLL | None:
    """libopus, with the decoder functions typed; None where it cannot be found."""
    package = Path(av.__file__).resolve().parent
    candidates = [str(path) for folder in (package.parent / "av.libs", package / ".dylibs")
                  for path in sorted(folder.glob("libopus*"))]
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            _declare(lib)
        except (OSError, AttributeError):
            continue
        return lib
    logger.warning("libopus not found: lost Opus packets are replaced by silence, "
                   "without in-band FEC")
    return None


def _declare(lib: ctypes.CDLL) -> None:
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                ctypes.POINTER(ctypes.c_int16), ctypes.c_int, ctypes.c_int]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int)]
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_int32]
    lib.opus_encode.restype = ctypes.c_int32
    # opus_encoder_ctl is variadic: its arguments are typed at each call.
    lib.opus_encoder_ctl.restype = ctypes.c_int


class OpusError(Exception):
    """libopus refused a packet (its error code is the argument)."""


class OpusDecoder:
    """One peer's Opus stream → mono PCM16 at ``rate``, with FEC and concealment."""

    def __init__(self, lib: ctypes.CDLL, rate: int) -> None:
        self._lib = lib
        self.rate = rate
        error = ctypes.c_int()
        state = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        if error.value != OPUS_OK or not state:
            raise OpusError(error.value)
        self._state: int | None = state
        self._max_samples = rate * MAX_PACKET_MS // 1000
        self._pcm = (ctypes.c_int16 * self._max_samples)()

    def decode(self, payload: bytes) -> bytes:
        """The audio of one packet that arrived."""
        return self._run(payload, self._max_samples, fec=False)

    def recover(self, next_payload: bytes, samples: int) -> bytes:
        """``samples`` of audio standing in for the packet just before ``next_payload``: its
        FEC copy where ``next_payload`` carries one, else libopus's concealment."""
        return self._run(next_payload, samples, fec=True)

    def conceal(self, samples: int) -> bytes:
        """``samples`` of concealment for a packet lost with no FEC to rebuild it."""
        return self._run(None, samples, fec=False)

    def close(self) -> None:
        """Free the decoder; safe to call twice."""
        if self._state is not None:
            self._lib.opus_decoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()

    def _run(self, payload: bytes | None, samples: int, *, fec: bool) -> bytes:
        if self._state is None:
            raise OpusError("closed")
        # libopus takes whole 2.5 ms steps of at most 120 ms.
        step = self.rate // 400
        samples = max(step, min(self._max_samples, samples - samples % step))
        size = len(payload) if payload is not None else 0
        n = self._lib.opus_decode(self._state, payload, size, self._pcm, samples, int(fec))
        if n < 0:
            raise OpusError(n)
        return ctypes.string_at(self._pcm, n * 2)


class LibopusEncoder:
    """Mono PCM16 at ``rate`` → Opus packets, one per frame, as FFmpeg's wrapper encodes."""

    def __init__(self, lib: ctypes.CDLL, rate: int, *, application: str, bitrate: int,
                 complexity: int) -> None:
        if application not in APPLICATIONS:
            raise ValueError(f"unknown Opus application {application!r}")
        self._lib = lib
        error = ctypes.c_int()
        state = lib.opus_encoder_create(rate, 1, APPLICATIONS[application],
                                        ctypes.byref(error))
        if error.value != OPUS_OK or not state:
            raise OpusError(error.value)
        self._state: int | None = state
        self._handle = ctypes.c_void_p(state)
        for request, value in ((_SET_BITRATE, bitrate), (_SET_COMPLEXITY, complexity),
                               *ENCODER_CTLS):
            code = lib.opus_encoder_ctl(self._handle, ctypes.c_int(request),
                                        ctypes.c_int32(value))
            if code != OPUS_OK:
                self.close()
                raise OpusError(code)
        self._out = ctypes.create_string_buffer(MAX_ENCODED_BYTES)

    def encode(self, pcm: bytes) -> bytes:
        """The packet of one frame of PCM16 (its length says how many samples)."""
        if self._state is None:
            raise OpusError("closed")
        size = self._lib.opus_encode(self._state, pcm, len(pcm) // 2, self._out,
                                     MAX_ENCODED_BYTES)
        if size < 0:
            raise OpusError(size)
        return ctypes.string_at(self._out, size)

    def close(self) -> None:
        """Free the encoder; safe to call twice."""
        if self._state is not None:
            self._lib.opus_encoder_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


# ---------------------------------------------------------------- packet headers

def packet_samples(payload: bytes, rate: int) -> int:
    """How many samples at ``rate`` the Opus packet holds, from its TOC byte (RFC 6716
    section 3.1); 0 for a packet too short to say."""
    if not payload:
        return 0
    toc = payload[0]
    frame = _frame_samples_48k(toc >> 3)
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(payload) >= 2:
        count = payload[1] & 0x3F
    else:
        return 0
    return frame * count * rate // OPUS_RATE


def has_fec(payload: bytes) -> bool:
    """Whether the Opus packet carries a redundant (LBRR) copy of the one before it.

    Only SILK and hybrid packets can. The flag is the first range-coded bit after the
    voice activity flags of the first frame's SILK layer; those bits have even odds, so
    they are the top bits of the frame's first byte (libopus 1.5 reads them the same way
    in ``opus_packet_has_lbrr``).
    """
    if not payload:
        return False
    toc = payload[0]
    config = toc >> 3
    if config >= 16:  # CELT only
        return False
    silk_frames = max(1, _frame_samples_48k(config) // 960)
    offset = _first_frame_offset(payload)
    if offset is None or offset >= len(payload):
        return False
    first = payload[offset]
    flag = (first >> (7 - silk_frames)) & 1
    if toc & 0x4:  # stereo: the side channel's flag follows the mid channel's
        flag |= (first >> (6 - 2 * silk_frames)) & 1
    return bool(flag)


def _frame_samples_48k(config: int) -> int:
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config & 1]
    return (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms


def _first_frame_offset(payload: bytes) -> int | None:
    """Where the first frame's data starts (RFC 6716 section 3.2)."""
    code = payload[0] & 3
    if code in (0, 1):
        return 1
    if code == 2:
        if len(payload) < 2:
            return None
        return 2 if payload[1] < 252 else 3
    if len(payload) < 2:
        return None
    count_byte = payload[1]
    offset = 2
    if count_byte & 0x40:  # padding: its length bytes come first
        while offset < len(payload):
            value = payload[offset]
            offset += 1
            if value != 255:
                break
    if count_byte & 0x80:  # VBR: the frame lengths (all but the last) come next
        for _ in range((count_byte & 0x3F) - 1):
            if offset >= len(payload):
                return None
            offset += 1 if payload[offset] < 252 else 2
    return offset
