"""The load's audio: a pre-encoded Opus click train, and click detection in decoded audio.

The load sends low-level noise with a short loud 2 kHz burst once a second. It is encoded
once, at start, into 20 ms Opus packets that the client tracks then send as they are, so
the load process never encodes. Two loads (:data:`LOADS`): ``mono`` (32 kbit/s, the
'voip' mode, what a browser sends by default) and ``stereo`` (48 kHz stereo at 96 kbit/s
in the 'audio' mode, what libwebrtc sends when the answer allows stereo: the heavier
stream a server may get). Round trip is measured between click onsets in *decoded*
audio on both sides: the onset inside the sent packet (found by decoding the train once)
and the onset inside the echoed packet. Both include Opus' algorithmic delay of their own
encode, so the figure is what a listener would hear, not just transit time.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
FRAMES_PER_PERIOD = 50  # one click a second
CLICK_START = 240  # sample inside the period where the burst starts (5 ms)
CLICK_SAMPLES = 240  # 5 ms burst
CLICK_HZ = 2000.0
CLICK_AMPLITUDE = 16000
NOISE_RMS = 30.0
DETECT_THRESHOLD = 4000  # well above noise and codec smear, well below the burst


@dataclass(frozen=True)
class Load:
    """How the click train is encoded: channels, bit rate, libopus application."""

    channels: int
    bitrate: int
    application: str


#: The load options of ``scripts/bench --load``.
LOADS = {
    "mono": Load(channels=1, bitrate=32000, application="voip"),
    "stereo": Load(channels=2, bitrate=96000, application="audio"),
}


@dataclass(frozen=True)
class ClickTrain:
    """One second of pre-encoded Opus packets, to be sent in a loop.

    ``click_frame`` is the index of the packet whose decoded audio holds the click onset
    and ``click_offset`` the onset's sample inside that packet's decoded frame.
    """

    packets: tuple[bytes, ...]
    click_frame: int
    click_offset: int


def period_pcm(seed: int = 1) -> np.ndarray:
    """One second of mono s16 PCM: quiet noise plus one windowed 2 kHz burst."""
    rng = np.random.default_rng(seed)
    samples = FRAMES_PER_PERIOD * FRAME_SAMPLES
    pcm = rng.normal(0.0, NOISE_RMS, samples)
    t = np.arange(CLICK_SAMPLES) / SAMPLE_RATE
    burst = CLICK_AMPLITUDE * np.sin(2 * np.pi * CLICK_HZ * t) * np.hanning(CLICK_SAMPLES) ** 0.25
    pcm[CLICK_START : CLICK_START + CLICK_SAMPLES] += burst
    return np.clip(pcm, -32768, 32767).astype(np.int16)


def _encode(pcm: np.ndarray, load: Load) -> list[bytes]:
    """Encode mono s16 PCM into 20 ms Opus packets (as a browser would send them); for a
    stereo load the right channel is the left one reversed in time (not a mono signal
    twice, which the encoder would code as mono)."""
    layout = "stereo" if load.channels == 2 else "mono"
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = layout
    encoder.format = "s16"
    encoder.bit_rate = load.bitrate
    encoder.time_base = TIME_BASE
    encoder.options = {"application": load.application}
    packets: list[bytes] = []
    for index in range(len(pcm) // FRAME_SAMPLES):
        chunk = pcm[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        if load.channels == 2:
            chunk = np.stack([chunk, chunk[::-1]], axis=1)  # interleaved L R
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * FRAME_SAMPLES
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    return packets


def build_click_train(load: Load = LOADS["mono"]) -> ClickTrain:
    """Encode three periods and keep the middle one, so the loop joins smoothly.

    The signal repeats every period, so the encoder state entering the kept period is the
    state the loop re-enters with; the splice at the loop point is inaudible.
    """
    pcm = np.tile(period_pcm(), 3)
    packets = _encode(pcm, load)
    cycle = packets[FRAMES_PER_PERIOD : 2 * FRAMES_PER_PERIOD]
    decoder = OpusDecoder()
    for payload in packets[:FRAMES_PER_PERIOD]:
        decoder.decode(payload)
    detector = ClickDetector()
    for index, payload in enumerate(cycle):
        onset = detector.feed(decoder.decode(payload))
        if onset is not None:
            return ClickTrain(tuple(cycle), index, onset)
    raise RuntimeError("click not found in the encoded train")


class OpusDecoder:
    """Decode single Opus packets to mono s16 samples (mono: half the work of stereo)."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = SAMPLE_RATE

    def decode(self, payload: bytes) -> np.ndarray:
        """Return the decoded samples of one packet (empty if the decoder gave none)."""
        frames = self._codec.decode(av.Packet(payload))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


class ClickDetector:
    """Find click onsets in a stream of decoded frames.

    An onset is the first sample over the threshold after a whole frame below it, so a
    burst spread over two packets counts once.
    """

    def __init__(self, threshold: int = DETECT_THRESHOLD) -> None:
        self._threshold = threshold
        self._armed = True

    def feed(self, samples: np.ndarray) -> int | None:
        """Feed one decoded frame; return the onset's sample index in it, if any."""
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= self._threshold)
        if loud.size == 0:
            self._armed = True
            return None
        if not self._armed:
            return None
        self._armed = False
        return int(loud[0])
