"""Pacing of the outbound track against a fake clock."""


from fractions import Fraction

import pytest
from aiortc.mediastreams import MediaStreamError

from relay.audio import FRAME_BYTES, FRAME_SAMPLES
from relay.audio.encode import OpusEncoder
from relay.webrtc.tracks import PlayoutTrack


class Clock:
    """A clock that only moves when the track sleeps (or when told to)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()

    async def sleep(delay: float) -> None:
        fake.sleeps.append(delay)
        fake.now += delay

    monkeypatch.setattr("relay.webrtc.tracks.asyncio.sleep", sleep)
    return fake


async def test_playout_track_paces_on_absolute_deadlines(clock: Clock) -> None:
    track = PlayoutTrack(lambda: bytes(FRAME_BYTES), clock=clock)
    times = []
    for i in range(100):
        clock.now += 0.0013 if i % 3 else 0.0  # processing time between pulls
        frame = await track.recv()
        times.append(clock.now)
        assert frame.pts == i * FRAME_SAMPLES and frame.samples == FRAME_SAMPLES
    assert times[-1] == pytest.approx(99 * 0.02, abs=0.002)  # no drift over 2 s
    assert track.reanchors == 0


async def test_playout_track_does_not_burst_after_a_stall(clock: Clock) -> None:
    track = PlayoutTrack(lambda: bytes(FRAME_BYTES), clock=clock)
    for _ in range(5):
        await track.recv()
    clock.now += 0.5  # the loop stalled for half a second
    late = await track.recv()
    clock.sleeps.clear()
    nxt = await track.recv()
    assert track.reanchors == 1
    assert clock.sleeps and clock.sleeps[0] > 0.01  # paced again, not bursting
    assert nxt.pts - late.pts == FRAME_SAMPLES and late.pts >= 5 * FRAME_SAMPLES + 0.5 * 24000 - 960


async def test_playout_track_calls_after_each_frame(clock: Clock) -> None:
    calls = []
    track = PlayoutTrack(lambda: bytes(FRAME_BYTES), after=lambda: calls.append(1), clock=clock)
    await track.recv()
    await track.recv()
    assert calls == [1, 1]
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_playout_track_encodes_opus_packets_with_monotonic_pts(clock: Clock) -> None:
    import av
    import numpy as np

    t = np.arange(FRAME_SAMPLES * 50) / 24000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    chunks = [tone[i:i + FRAME_BYTES] for i in range(0, len(tone), FRAME_BYTES)]
    track = PlayoutTrack(lambda: chunks.pop(0) if chunks else bytes(FRAME_BYTES), clock=clock)
    track.encode_opus(OpusEncoder())
    decoder = av.CodecContext.create("opus", "r")
    pts, decoded = [], []
    for _ in range(50):
        packet = await track.recv()
        assert isinstance(packet, av.Packet)
        pts.append(packet.pts * packet.time_base)
        for frame in decoder.decode(av.Packet(bytes(packet))):
            decoded.append(frame.to_ndarray().ravel())
    assert pts == [Fraction(i * FRAME_SAMPLES, 24000) for i in range(50)]
    assert packet.time_base == Fraction(1, 48000)  # aiortc's RTP clock: no conversion
    audio = np.concatenate(decoded)[4800:]  # past the codec's start-up
    level = np.sqrt(np.mean(audio.astype(float) ** 2))
    scale = 32767 if audio.dtype.kind == "f" else 1
    assert level * scale == pytest.approx(8000 / np.sqrt(2), rel=0.1)

