"""Inbound RTP audio: decoding in sequence order, reordering, loss and bad payloads."""

import fractions

import av
import numpy as np
import pytest

from relay.audio.inbound import MAX_CONCEAL_PACKETS, InboundAudio

OPUS, PCMU, PCMA, G722 = 111, 0, 8, 9
CODECS = {OPUS: "audio/opus", PCMU: "audio/PCMU", PCMA: "audio/PCMA", G722: "audio/G722"}
TONE_HZ = 1000.0


def tone(rate: int, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def opus_packets(seconds: float, channels: int = 1, frame_ms: int = 20) -> list[bytes]:
    """Opus packets of a 1 kHz tone, as a browser would send them (20 ms by default)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo" if channels == 2 else "mono"
    encoder.format = "s16"
    encoder.bit_rate = 64000
    encoder.time_base = fractions.Fraction(1, 48000)
    encoder.options = {"frame_duration": str(frame_ms)}
    pcm = tone(48000, seconds)
    packets = []
    for i in range(len(pcm) // 960):
        data = np.repeat(pcm[i * 960:(i + 1) * 960], channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=encoder.layout.name)
        frame.sample_rate = 48000
        frame.pts = i * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def narrowband_packets(seconds: float, codec: str = "pcm_mulaw",
                       rate: int = 8000) -> list[bytes]:
    """20 ms packets of a 1 kHz tone in a G.711 (or, at 16 kHz, G.722) codec."""
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate = rate
    encoder.layout = "mono"
    encoder.format = "s16"
    pcm = tone(rate, seconds)
    per = rate // 50
    packets = []
    for i in range(len(pcm) // per):
        frame = av.AudioFrame.from_ndarray(pcm[None, i * per:(i + 1) * per], format="s16",
                                           layout="mono")
        frame.sample_rate = rate
        frame.pts = i * per
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def mulaw_packets(seconds: float) -> list[bytes]:
    return narrowband_packets(seconds)


def feed(inbound: InboundAudio, order: list[int], packets: list[bytes], pt: int = OPUS,
         first_seq: int = 0) -> np.ndarray:
    out = b"".join(b"".join(inbound.packet(pt, (first_seq + i) & 0xFFFF, packets[i]))
                   for i in order)
    out += inbound.flush()
    return np.frombuffer(out, dtype=np.int16).astype(np.float64)


def dominant_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * 24000 / len(y))


def make() -> InboundAudio:
    inbound = InboundAudio(chunk_ms=20)
    inbound.set_codecs(CODECS)
    return inbound


@pytest.mark.parametrize("channels", [1, 2])
def test_inbound_opus_decodes_to_24k_mono_tone(channels: int) -> None:
    packets = opus_packets(2.0, channels)
    inbound = make()
    y = feed(inbound, list(range(len(packets))), packets)
    assert len(y) == pytest.approx(2.0 * 24000, abs=480)
    body = y[4800:-2400]
    assert dominant_hz(body) == pytest.approx(TONE_HZ, abs=3)
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.3 * 32767 / np.sqrt(2), rel=0.1)
    assert inbound.stats.decoded == len(packets) and inbound.stats.lost == 0


@pytest.mark.parametrize("frame_ms", [10, 60])
def test_inbound_other_packet_durations(frame_ms: int) -> None:
    packets = opus_packets(1.2, frame_ms=frame_ms)
    assert len(packets) == pytest.approx(1200 / frame_ms, abs=2)
    inbound = make()
    order = [i for i in range(len(packets)) if i != 7]  # and one lost
    y = feed(inbound, order, packets)
    assert inbound.stats.lost == 1 and inbound.stats.concealed == 1
    assert len(y) == pytest.approx(1.2 * 24000, abs=480 + 24 * frame_ms)
    assert dominant_hz(y[4800:-2400]) == pytest.approx(TONE_HZ, abs=3)


def test_inbound_chunks_leave_as_each_packet_arrives() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    sizes = [sum(len(c) for c in inbound.packet(OPUS, i, p)) for i, p in enumerate(packets)]
    # No jitter buffer: from the second packet on, every packet releases one 20 ms chunk.
    assert all(size >= 2 * 480 - 2 * 48 for size in sizes[1:])


@pytest.mark.parametrize("pt,codec,rate", [(PCMU, "pcm_mulaw", 8000),
                                           (PCMA, "pcm_alaw", 8000), (G722, "g722", 16000)])
def test_inbound_g711_and_g722_decode_and_resample(pt: int, codec: str, rate: int) -> None:
    packets = narrowband_packets(2.0, codec, rate)
    y = feed(make(), list(range(len(packets))), packets, pt=pt)
    assert len(y) == pytest.approx(2.0 * 24000, abs=480)
    body = y[2400:-2400]
    assert dominant_hz(body) == pytest.approx(TONE_HZ, abs=3)
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.3 * 32767 / np.sqrt(2), rel=0.1)


def test_inbound_reordered_packets_come_out_in_order() -> None:
    packets = opus_packets(1.0)
    order = list(range(len(packets)))
    for i in range(5, 45, 7):  # swap neighbours here and there
        order[i], order[i + 1] = order[i + 1], order[i]
    inbound = make()
    y = feed(inbound, order, packets, first_seq=65530)  # and wrap the sequence number
    reference = feed(make(), list(range(len(packets))), packets)
    assert inbound.stats.lost == 0 and inbound.stats.late == 0
    np.testing.assert_array_equal(y, reference)


def test_inbound_loss_is_replaced_by_silence_of_the_same_length() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    order = [i for i in range(len(packets)) if i not in (20, 21, 22)]
    y = feed(inbound, order, packets)
    assert inbound.stats.lost == 3 and inbound.stats.concealed == 3
    assert len(y) == pytest.approx(24000, abs=480)  # the timeline keeps its length
    gap = np.abs(y[20 * 480 + 240:23 * 480 - 240])
    assert gap.max() < 0.02 * 32767


def test_inbound_late_and_duplicate_packets_are_dropped() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    order = list(range(30)) + [10, 29] + list(range(30, len(packets)))
    y = feed(inbound, order, packets)
    assert inbound.stats.late == 2 and inbound.stats.lost == 0
    assert len(y) == pytest.approx(24000, abs=480)


def test_inbound_long_gap_conceals_at_most_the_bound() -> None:
    packets = opus_packets(2.0)
    inbound = make()
    order = list(range(10)) + list(range(60, len(packets)))
    y = feed(inbound, order, packets)
    assert inbound.stats.lost == 50 and inbound.stats.concealed == MAX_CONCEAL_PACKETS
    expected = (len(packets) - 50 + MAX_CONCEAL_PACKETS) * 480
    assert len(y) == pytest.approx(expected, abs=480)


def test_inbound_bad_payloads_and_unknown_types_are_skipped() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    out = b""
    for i, packet in enumerate(packets):
        if i == 10:
            packet = b"\xff" * 3  # not a valid Opus packet
        out += b"".join(inbound.packet(OPUS, i, packet))
    out += b"".join(inbound.packet(99, len(packets), b"\x00" * 20))
    assert inbound.stats.undecodable == 1 and inbound.stats.unknown_payload == 1
    assert len(out) > 0.9 * 24000 * 2


def test_inbound_sequence_jump_resynchronises() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    out = b""
    for i, packet in enumerate(packets):
        seq = i if i < 25 else 30000 + i  # the peer's stream restarted elsewhere
        out += b"".join(inbound.packet(OPUS, seq, packet))
    assert inbound.stats.late == 0 and inbound.stats.lost == 0
    assert len(out) + len(inbound.flush()) == pytest.approx(2 * 24000, abs=960)


def test_inbound_codec_switch_mid_call_is_counted_not_fatal() -> None:
    opus, mulaw = opus_packets(0.5), mulaw_packets(0.5)
    inbound = make()
    out = b"".join(b"".join(inbound.packet(OPUS, i, p)) for i, p in enumerate(opus))
    base = len(opus)
    out += b"".join(b"".join(inbound.packet(PCMU, base + i, p)) for i, p in enumerate(mulaw))
    assert inbound.stats.undecodable == len(mulaw)  # the 8 kHz frames do not fit the stream
    assert len(out) > 0.4 * 24000 * 2
