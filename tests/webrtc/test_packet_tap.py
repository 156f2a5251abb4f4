"""The RTP tap that stands in for aiortc's audio jitter buffer."""

from aiortc.rtp import RtpPacket

from relay.webrtc.packet_tap import PacketTap


def test_packet_tap_survives_a_failing_handler() -> None:
    seen: list[int] = []

    def handler(payload_type: int, sequence: int, payload: bytes) -> None:
        seen.append(sequence)
        if sequence == 1:
            raise RuntimeError("boom")

    tap = PacketTap(handler)
    for seq in range(3):
        assert tap.add(RtpPacket(payload_type=111, sequence_number=seq, payload=b"x")) == (
            False, None)
    assert seen == [0, 1, 2] and tap.failures == 1
