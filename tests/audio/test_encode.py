"""Opus encoding of the downlink, and skipping the encoder through silence."""

import fractions

import av
import numpy as np
import pytest

from relay.audio import FRAME_BYTES
from relay.audio.encode import OpusEncoder, pcm_frame
from relay.audio.opus import load_libopus
from relay.client import read_wav

from ..conftest import FIXTURES

needs_libopus = pytest.mark.skipif(load_libopus() is None, reason="libopus not found")


def frames_of(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def conversation() -> list[bytes]:
    """Speech, two seconds of digital silence, speech, silence: as a model's turns go."""
    speech = frames_of(read_wav(FIXTURES / "hello.wav"))
    silence = [bytes(FRAME_BYTES)] * 100
    return speech + silence + speech + silence


def plain_encode(frames: list[bytes]) -> list[bytes]:
    """The same frames through the same encoder, never skipping: the reference stream."""
    encoder = OpusEncoder()
    packets = []
    for pcm in frames:
        encoder._settled = False
        packets.append(encoder.encode(pcm))
    return packets


def decode(packets: list[bytes]) -> np.ndarray:
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    return np.concatenate([frame.to_ndarray().ravel() for packet in packets
                           for frame in decoder.decode(av.Packet(packet))]).astype(float)


def envelope(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x[: len(x) // 960 * 960].reshape(-1, 960) ** 2).mean(axis=1))


def test_encoder_skips_silence_and_the_peer_hears_the_same() -> None:
    frames = conversation()
    speech = len(frames_of(read_wav(FIXTURES / "hello.wav")))
    encoder = OpusEncoder()
    packets = [encoder.encode(pcm) for pcm in frames]
    # Most of the 200 silent frames did not run the encoder.
    assert encoder.stats.frames == len(frames)
    assert len(frames) - encoder.stats.encoded > 150
    skipped, plain = decode(packets), decode(plain_encode(frames))
    # The silences decode to digital silence, past the codec's ringing.
    for start in (speech, 2 * speech + 100):
        assert np.abs(skipped[(start + 5) * 960:(start + 100) * 960]).max() <= 2
    # The speech after a skipped silence decodes as it would have: same contour and level.
    again = slice((speech + 100) * 960, (2 * speech + 100) * 960)
    a, b = envelope(skipped[again]), envelope(plain[again])
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert np.sqrt(np.mean(skipped[again] ** 2)) == pytest.approx(
        np.sqrt(np.mean(plain[again] ** 2)), rel=0.05)


def test_encoder_keeps_encoding_quiet_noise() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3, 480 * 100).astype("<i2").tobytes()  # near silence, not zero
    encoder = OpusEncoder()
    for pcm in frames_of(noise):
        encoder.encode(pcm)
    assert encoder.stats.encoded == encoder.stats.frames


@pytest.mark.parametrize("application", ["voip", "audio", "lowdelay"])
@pytest.mark.parametrize("complexity", [0, 10])
def test_encoder_output_decodes_to_the_input(complexity: int, application: str) -> None:
    t = np.arange(480 * 50) / 24000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    encoder = OpusEncoder(32000, complexity, application)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48000, "mono"
    out = np.concatenate([frame.to_ndarray().ravel() for pcm in frames_of(tone)
                          for frame in decoder.decode(av.Packet(encoder.encode(pcm)))])
    level = np.sqrt(np.mean(out[9600:].astype(float) ** 2))
    assert level == pytest.approx(8000 / np.sqrt(2), rel=0.1)


def pyav_encode(frames: list[bytes], bitrate: int, complexity: int,
                application: str) -> list[bytes]:
    """Every frame through FFmpeg's libopus wrapper, as the relay encoded before it called
    libopus itself."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 24000, "mono", "s16"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, 24000)
    codec.options = {"application": application, "frame_duration": "20",
                     "compression_level": str(complexity)}
    return [bytes(packet) for index, pcm in enumerate(frames)
            for packet in codec.encode(pcm_frame(pcm, index))]


@needs_libopus
@pytest.mark.parametrize("application", ["voip", "audio", "lowdelay"])
@pytest.mark.parametrize(("bitrate", "complexity"), [(48000, 10), (32000, 5), (64000, 0)])
def test_encoder_libopus_packets_match_pyav_byte_for_byte(
        application: str, bitrate: int, complexity: int) -> None:
    rng = np.random.default_rng(11)
    noise = frames_of(rng.normal(0, 2000, 480 * 50).astype("<i2").tobytes())
    frames = frames_of(read_wav(FIXTURES / "hello.wav")) + [bytes(FRAME_BYTES)] * 30 + noise
    direct = OpusEncoder(bitrate, complexity, application)
    assert direct.direct
    packets = []
    for pcm in frames:
        direct._settled = False  # never skip: compare every frame the encoder runs for
        packets.append(direct.encode(pcm))
    assert packets == pyav_encode(frames, bitrate, complexity, application)


def test_encoder_without_libopus_goes_through_pyav() -> None:
    frames = frames_of(read_wav(FIXTURES / "hello.wav"))
    encoder = OpusEncoder(use_libopus=False)
    assert not encoder.direct
    packets = []
    for pcm in frames:
        encoder._settled = False
        packets.append(encoder.encode(pcm))
    assert packets == pyav_encode(frames, 48000, 10, "lowdelay")
