"""Uplink resampling and chunking."""

import av
import numpy as np
import pytest

from relay.audio.resample import Uplink


def tone_frames(rate: int, layout: str, seconds: float, freq: float = 1000.0,
                amplitude: float = 0.3, frame_ms: int = 20) -> list[av.AudioFrame]:
    per = rate * frame_ms // 1000
    channels = 2 if layout == "stereo" else 1
    frames = []
    for i in range(int(seconds * 1000 / frame_ms)):
        t = (np.arange(per) + i * per) / rate
        x = (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        data = np.repeat(x, channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = i * per
        frames.append(frame)
    return frames


def run(uplink: Uplink, frames: list[av.AudioFrame]) -> np.ndarray:
    out = b"".join(chunk for frame in frames for chunk in uplink.feed(frame)) + uplink.flush()
    return np.frombuffer(out, dtype=np.int16).astype(np.float64)


@pytest.mark.parametrize("rate,layout", [(48000, "stereo"), (8000, "mono"), (16000, "mono")])
def test_uplink_tone_keeps_frequency_and_level(rate: int, layout: str) -> None:
    y = run(Uplink(40), tone_frames(rate, layout, 2.0))
    body = y[2400:-2400]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    assert np.argmax(spectrum) * 24000 / len(body) == pytest.approx(1000, abs=2)
    rms = np.sqrt(np.mean(body**2))
    assert rms == pytest.approx(0.3 * 32767 / np.sqrt(2), rel=0.02)


def test_uplink_has_no_discontinuity_at_frame_or_chunk_edges() -> None:
    y = run(Uplink(40), tone_frames(48000, "stereo", 1.0))[480:-480]
    # A 1 kHz sine at 24 kHz moves at most 2π·1000/24000·A per sample; a click would jump.
    limit = 2 * np.pi * 1000 / 24000 * 0.3 * 32767 * 1.05
    assert np.max(np.abs(np.diff(y))) < limit


def test_uplink_counts_samples_exactly_over_a_long_call() -> None:
    uplink = Uplink(100)
    seconds = 600  # ten minutes of 20 ms frames
    silence = av.AudioFrame(format="s16", layout="stereo", samples=960)
    for plane in silence.planes:
        plane.update(bytes(plane.buffer_size))
    silence.sample_rate = 48000
    total = 0
    for i in range(seconds * 50):
        silence.pts = i * 960
        total += sum(len(c) for c in uplink.feed(silence)) // 2
    total += len(uplink.flush()) // 2
    assert total == uplink.samples_out
    assert abs(total - 24000 * seconds) <= 480
    assert uplink.seconds_in == pytest.approx(seconds)


def test_uplink_chunks_have_the_configured_duration_within_slack() -> None:
    uplink = Uplink(60)
    sizes = [len(c) for f in tone_frames(48000, "stereo", 1.0) for c in uplink.feed(f)]
    assert all(58 * 48 <= size <= 60 * 48 for size in sizes)
    assert sizes.count(60 * 48) >= len(sizes) - 1


def test_uplink_frame_sized_chunks_do_not_wait_for_the_next_frame() -> None:
    uplink = Uplink(20)
    # Every 20 ms frame yields its chunk at once, though the resampler holds a few samples.
    assert all(len(uplink.feed(frame)) == 1 for frame in tone_frames(48000, "stereo", 1.0))
