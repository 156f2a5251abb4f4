"""The playout buffer's framing and per-item accounting."""

from relay.audio import FRAME_BYTES, FRAME_SAMPLES
from relay.audio.playout import ItemPlayback, Playout


def test_playout_pull_spans_segments_and_pads_with_silence() -> None:
    playout = Playout(10 * FRAME_SAMPLES)
    a, b = ItemPlayback("a", "r"), ItemPlayback("b", "r2")
    playout.push(a, b"\x01\x00" * 300)
    playout.push(b, b"\x02\x00" * 100)
    frame, touched = playout.pull()
    assert len(frame) == FRAME_BYTES
    assert frame == b"\x01\x00" * 300 + b"\x02\x00" * 100 + bytes(2 * 80)
    assert touched == [a, b]
    assert (a.sent, b.sent) == (300, 100) and playout.queued == 0


def test_playout_silence_when_empty() -> None:
    frame, touched = Playout(100).pull()
    assert frame == bytes(FRAME_BYTES) and touched == []


def test_playout_discard_keeps_other_responses_and_sent_counts() -> None:
    playout = Playout(100 * FRAME_SAMPLES)
    a, b = ItemPlayback("a", "r1"), ItemPlayback("b", "r2")
    playout.push(a, bytes(FRAME_BYTES * 3))
    playout.push(b, b"\x05\x00" * FRAME_SAMPLES)
    playout.pull()
    playout.pull()
    playout.push(a, bytes(10))  # a later delta of r1, queued after b
    removed = playout.discard({"r1"})
    assert removed == FRAME_SAMPLES + 5
    assert a.sent == 2 * FRAME_SAMPLES and a.queued == FRAME_SAMPLES + 5
    frame, touched = playout.pull()
    assert frame == b"\x05\x00" * FRAME_SAMPLES and touched == [b]


def test_playout_discard_mid_segment_resets_offset() -> None:
    playout = Playout(100 * FRAME_SAMPLES)
    a, b = ItemPlayback("a", "r1"), ItemPlayback("b", "r2")
    playout.push(b, b"\x07\x00" * (FRAME_SAMPLES + 10))
    playout.pull()
    playout.push(a, bytes(FRAME_BYTES))
    playout.discard({"r1"})
    frame, _ = playout.pull()
    assert frame[:20] == b"\x07\x00" * 10 and frame[20:] == bytes(FRAME_BYTES - 20)


def test_playout_bound_drops_and_counts() -> None:
    playout = Playout(FRAME_SAMPLES)
    item = ItemPlayback("a", "r")
    assert playout.push(item, bytes(FRAME_BYTES * 2)) == FRAME_SAMPLES
    assert item.dropped == FRAME_SAMPLES and playout.dropped == FRAME_SAMPLES
    assert item.received == FRAME_SAMPLES
