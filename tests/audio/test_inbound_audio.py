"""Inbound RTP audio: decoding in sequence order, reordering, loss and bad payloads."""

import fractions

import av
import numpy as np
import pytest

from relay.audio.inbound_audio import MAX_CONCEAL_PACKETS, InboundAudio
from relay.audio.opus import has_fec, load_libopus, packet_samples

OPUS, PCMU, PCMA, G722 = 111, 0, 8, 9
CODECS = {OPUS: "audio/opus", PCMU: "audio/PCMU", PCMA: "audio/PCMA", G722: "audio/G722"}
TONE_HZ = 1000.0


def tone(rate: int, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def opus_packets(seconds: float, channels: int = 1, frame_ms: int = 20, *,
                 fec: bool = False, pcm: np.ndarray | None = None) -> list[bytes]:
    """Opus packets of a 1 kHz tone (or of ``pcm``, 48 kHz), as a browser would send them
    (20 ms by default); with ``fec``, in-band FEC at a browser's voice bit rate."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo" if channels == 2 else "mono"
    encoder.format = "s16"
    encoder.bit_rate = 24000 if fec else 64000
    encoder.time_base = fractions.Fraction(1, 48000)
    encoder.options = {"frame_duration": str(frame_ms)}
    if fec:
        encoder.options = {"frame_duration": str(frame_ms), "application": "voip",
                           "fec": "1", "packet_loss": "20"}
    pcm = tone(48000, seconds) if pcm is None else pcm
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
    """Feed ``packets`` in ``order``, one every 20 ms, then flush; the audio, as floats."""
    out = b"".join(b"".join(inbound.packet(pt, (first_seq + i) & 0xFFFF, packets[i], n * 0.02))
                   for n, i in enumerate(order))
    out += inbound.flush()
    return np.frombuffer(out, dtype=np.int16).astype(np.float64)


def dominant_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * 24000 / len(y))


def make(*, use_libopus: bool = True, reorder_ms: int = 60) -> InboundAudio:
    inbound = InboundAudio(chunk_ms=20, reorder_ms=reorder_ms, use_libopus=use_libopus)
    inbound.set_codecs(CODECS)
    return inbound


needs_libopus = pytest.mark.skipif(load_libopus() is None, reason="libopus not found")


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
    sizes = [sum(len(c) for c in inbound.packet(OPUS, i, p, i * 0.02))
             for i, p in enumerate(packets)]
    # No jitter buffer: every packet releases its 20 ms chunk at once, and nothing waits.
    assert all(size >= 2 * 480 - 2 * 48 for size in sizes[1:])
    assert inbound.deadline is None


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


def test_inbound_loss_without_libopus_is_silence_of_the_same_length() -> None:
    packets = opus_packets(1.0)
    inbound = make(use_libopus=False)
    order = [i for i in range(len(packets)) if i not in (20, 21, 22)]
    y = feed(inbound, order, packets)
    assert inbound.stats.lost == 3 and inbound.stats.concealed == 3
    assert len(y) == pytest.approx(24000, abs=480)  # the timeline keeps its length
    gap = np.abs(y[20 * 480 + 240:23 * 480 - 240])
    assert gap.max() < 0.02 * 32767


@needs_libopus
def test_inbound_loss_is_concealed_by_libopus_sample_exact() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    order = [i for i in range(len(packets)) if i not in (20, 21, 22)]
    y = feed(inbound, order, packets)
    assert inbound.stats.lost == 3 and inbound.stats.concealed == 3
    # libopus decodes at 24 kHz: no resampler, so every packet is exactly 480 samples.
    assert len(y) == 480 * len(packets)
    assert inbound.uplink.samples_out == 480 * len(packets)
    # The concealment carries the tone on rather than dropping to silence.
    gap = y[20 * 480:21 * 480]
    assert np.sqrt(np.mean(gap**2)) > 0.05 * 32767


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
        out += b"".join(inbound.packet(OPUS, i, packet, i * 0.02))
    out += b"".join(inbound.packet(99, len(packets), b"\x00" * 20, 1.0))
    assert inbound.stats.undecodable == 1 and inbound.stats.unknown_payload == 1
    assert len(out) > 0.9 * 24000 * 2


def test_inbound_sequence_jump_resynchronises() -> None:
    packets = opus_packets(1.0)
    inbound = make()
    out = b""
    for i, packet in enumerate(packets):
        seq = i if i < 25 else 30000 + i  # the peer's stream restarted elsewhere
        out += b"".join(inbound.packet(OPUS, seq, packet, i * 0.02))
    assert inbound.stats.late == 0 and inbound.stats.lost == 0
    assert len(out) + len(inbound.flush()) == pytest.approx(2 * 24000, abs=960)


@pytest.mark.parametrize("use_libopus", [True, False])
def test_inbound_codec_switch_mid_call_is_not_fatal(use_libopus: bool) -> None:
    opus, mulaw = opus_packets(0.5), mulaw_packets(0.5)
    inbound = make(use_libopus=use_libopus)
    out = b"".join(b"".join(inbound.packet(OPUS, i, p, i * 0.02)) for i, p in enumerate(opus))
    base = len(opus)
    out += b"".join(b"".join(inbound.packet(PCMU, base + i, p, (base + i) * 0.02))
                    for i, p in enumerate(mulaw))
    if use_libopus and inbound.fec:
        # libopus feeds 24 kHz straight in; the 8 kHz frames then take the resampler.
        assert inbound.stats.undecodable == 0
        assert len(out) > 0.9 * 24000 * 2
    else:
        assert inbound.stats.undecodable == len(mulaw)  # 8 kHz frames do not fit the stream
        assert len(out) > 0.4 * 24000 * 2


def test_inbound_gap_waits_its_window_in_time_then_is_given_up() -> None:
    packets = opus_packets(0.5)
    inbound = make(reorder_ms=60)
    for i in range(5):
        inbound.packet(OPUS, i, packets[i], i * 0.02)
    # 5 is lost; 6, 7, 8 arrive and wait for it.
    assert inbound.packet(OPUS, 6, packets[6], 0.12) == []
    assert inbound.deadline == pytest.approx(0.18)
    assert inbound.packet(OPUS, 7, packets[7], 0.14) == []
    assert inbound.expire(0.17) == []
    released = inbound.expire(0.18)
    # The lost packet's stand-in, then 6 and 7: three 20 ms chunks at once.
    assert sum(len(c) for c in released) == pytest.approx(3 * 960, abs=96)
    assert inbound.stats.lost == 1 and inbound.deadline is None


@pytest.mark.parametrize(("reorder_ms", "lost"), [(60, 0), (20, 1)])
def test_inbound_late_packet_within_the_window_comes_in_order(reorder_ms: int,
                                                              lost: int) -> None:
    # Packet 10 arrives 50 ms late, behind 11, 12 and half of 13: a two-packet window
    # would have given it up, a 60 ms one keeps it.
    packets = opus_packets(1.0)
    inbound = make(reorder_ms=reorder_ms)
    arrivals = sorted((i * 0.02 + (0.05 if i == 10 else 0), i) for i in range(len(packets)))
    out = b"".join(b"".join(inbound.packet(OPUS, i, packets[i], t)) for t, i in arrivals)
    out += inbound.flush()
    assert (inbound.stats.lost, inbound.stats.late) == (lost, lost)
    reference = feed(make(), list(range(len(packets))), packets)
    if not lost:
        np.testing.assert_array_equal(np.frombuffer(out, dtype=np.int16), reference)


def speech_48k(speech: bytes) -> np.ndarray:
    x = np.frombuffer(speech, dtype="<i2").astype(np.float64)
    return np.interp(np.arange(len(x) * 2) / 2, np.arange(len(x)), x).astype(np.int16)


@needs_libopus
def test_inbound_lost_packet_is_rebuilt_from_the_next_packets_fec(speech: bytes) -> None:
    packets = opus_packets(0, fec=True, pcm=speech_48k(speech))
    with_fec = [i for i, p in enumerate(packets) if has_fec(p)]
    assert len(with_fec) > len(packets) // 2  # voiced speech carries FEC
    lost = [i - 1 for i in with_fec[5:40:7]]
    clean = feed(make(), list(range(len(packets))), packets)
    inbound = make()
    y = feed(inbound, [i for i in range(len(packets)) if i not in lost], packets)
    assert inbound.stats.lost == len(lost) and inbound.stats.recovered == len(lost)
    assert len(y) == len(clean)  # sample-exact
    # What FEC rebuilt is close to what the packet held; concealment alone is not.
    plc = make()
    plc_y = feed(plc, [i for i in range(len(packets)) if i not in lost],
                 [p if i - 1 not in lost else strip_fec(p) for i, p in enumerate(packets)])
    assert plc.stats.recovered == 0 and plc.stats.concealed == len(lost)

    def error(z: np.ndarray) -> float:
        return sum(float(np.sum((z[i * 480:(i + 1) * 480] - clean[i * 480:(i + 1) * 480]) ** 2))
                   for i in lost)

    assert error(y) < 0.5 * error(plc_y), (error(y), error(plc_y))


def strip_fec(packet: bytes) -> bytes:
    """The same packet as far as the decoder's FEC check goes, without its LBRR flag."""
    stripped = bytearray(packet)
    stripped[1] &= ~(1 << 6)
    assert not has_fec(bytes(stripped))
    return bytes(stripped)


@needs_libopus
def test_inbound_opus_header_reading_matches_libopus(speech: bytes) -> None:
    import ctypes

    lib = load_libopus()
    assert lib is not None
    packets = (opus_packets(0, fec=True, pcm=speech_48k(speech)) + opus_packets(0.5)
               + opus_packets(0.5, channels=2) + opus_packets(0.5, frame_ms=60, fec=True)
               + opus_packets(0.5, frame_ms=10))
    lib.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32]
    for packet in packets:
        assert packet_samples(packet, 24000) == lib.opus_packet_get_nb_samples(
            packet, len(packet), 24000)
    if hasattr(lib, "opus_packet_has_lbrr"):  # libopus 1.5 and later
        lib.opus_packet_has_lbrr.argtypes = [ctypes.c_char_p, ctypes.c_int32]
        flags = [has_fec(p) for p in packets]
        assert flags == [lib.opus_packet_has_lbrr(p, len(p)) == 1 for p in packets]
        assert any(flags) and not all(flags)
