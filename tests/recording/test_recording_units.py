"""The recording's sans-I/O parts and its files, without a call: the timeline, the event
lines, the files a kill leaves, retention."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from relay.protocol.redact import Redactor
from relay.recording.event_lines import EventLines
from relay.recording.recording_files import RecordingFiles
from relay.recording.recordings import Retention, sweep
from relay.recording.stereo_timeline import ASSISTANT, GAP_SAMPLES, USER, StereoTimeline

from .support import read_audio, until

FRAME = 480


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pcm(value: int, samples: int = FRAME) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def channels(stereo: bytes) -> tuple[np.ndarray, np.ndarray]:
    x = np.frombuffer(stereo, dtype="<i2")
    return x[0::2], x[1::2]


def test_timeline_places_each_channel_when_it_passed() -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    clock.now += 0.1  # the user's first audio arrives 100 ms in
    timeline.add(USER, pcm(1000))
    clock.now += 0.5  # the assistant's first frame leaves 600 ms in
    timeline.add(ASSISTANT, pcm(2000))
    left, right = channels(timeline.take())
    assert np.flatnonzero(left)[0] == 2400 and len(np.flatnonzero(left)) == FRAME
    assert np.flatnonzero(right)[0] == 14400 and len(np.flatnonzero(right)) == FRAME
    assert len(left) == len(right) == 14400 + FRAME


def test_timeline_lays_jittered_chunks_end_to_end_and_keeps_gaps() -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    for i, jitter in enumerate((0.0, 0.012, 0.004, 0.019, 0.0)):  # late, by less than a gap
        clock.now = 100.0 + 0.02 * i + jitter
        timeline.add(USER, pcm(1000))
    left, _ = channels(timeline.take(5 * FRAME))
    assert np.all(left == 1000)
    clock.now += 1.0  # the peer sent nothing for a second (DTX): kept as silence
    timeline.add(USER, pcm(3000))
    left, _ = channels(timeline.take())
    start = np.flatnonzero(left == 3000)[0]
    assert start > GAP_SAMPLES and np.all(left[:start] == 0)
    assert abs(timeline.taken - FRAME - timeline.now()) <= 1


def test_timeline_pulls_back_a_channel_a_burst_left_behind() -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    clock.now = 100.1
    for _ in range(3):  # three chunks held up while the call connected arrive at once
        timeline.add(USER, pcm(1000))
    for i in range(1, 40):  # then the stream on time, a chunk every 20 ms
        clock.now = 100.1 + 0.02 * i
        timeline.add(USER, pcm(1000 + i))
    left, _ = channels(timeline.take())
    # The last chunk sits where it arrived (within a quarter frame), not 40 ms later.
    last = np.flatnonzero(left == 1039)
    assert len(last) == FRAME
    assert abs(last[0] - round(0.02 * 39 * 24000 + 2400)) <= FRAME // 4


def test_timeline_pulls_forward_a_channel_a_short_gap_left_ahead() -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    for i in range(40):  # the playout clock skipped 30 ms (less than a gap) after frame 4
        clock.now = 100.1 + 0.02 * i + (0.03 if i >= 5 else 0.0)
        timeline.add(ASSISTANT, pcm(1000 + i))
    _, right = channels(timeline.take())
    last = np.flatnonzero(right == 1039)
    assert len(last) == FRAME
    assert abs(last[0] - round((0.1 + 0.02 * 39 + 0.03) * 24000)) <= FRAME // 4


def test_timeline_lays_a_channel_jitter_left_behind_end_to_end_until_it_stays_behind(
        ) -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    for i, jitter in enumerate((0.0, 0.015, 0.0, 0.0, 0.0)):  # one late packet
        clock.now = 100.0 + 0.02 * (i + 1) + jitter
        timeline.add(USER, pcm(1000 + i))
    left, _ = channels(timeline.take())
    assert [int(np.count_nonzero(left == 1000 + i)) for i in range(5)] == [FRAME] * 5


def test_timeline_take_leaves_late_audio_after_the_silence_it_took() -> None:
    clock = Clock()
    timeline = StereoTimeline(clock)
    clock.now += 0.2
    assert timeline.ready(int(0.1 * 24000)) == 2400
    first = timeline.take(2400)
    assert len(first) == 2 * 2 * 2400 and not any(first)
    timeline.add(ASSISTANT, pcm(5))  # arrived at 4800; its place (4800) is after the take
    _, right = channels(timeline.take())
    assert np.flatnonzero(right)[0] == 2400  # 4800 - 2400: laid where it arrived
    assert timeline.take() == b""


def test_event_lines_leave_audio_out_and_mask_secrets() -> None:
    lines = EventLines(Redactor(["sk-secret-0123456789"]))
    delta = json.dumps({"type": "response.output_audio.delta", "delta": "AAAAAAAA",
                        "item_id": "item_1"})
    line = json.loads(lines.line(1.23456, "upstream_to_relay", delta) or "")
    assert line == {"t": 1.235, "dir": "upstream_to_relay", "event": {
        "type": "response.output_audio.delta", "delta": {"omitted_audio_bytes": 6},
        "item_id": "item_1"}}
    assert lines.line(0, "relay_to_upstream", {"type": "input_audio_buffer.append",
                                               "audio": "AAAA"}) is None
    item = {"type": "conversation.item.retrieved", "item": {"content": [
        {"type": "input_audio", "audio": "AAAAAAAA", "transcript": "hi"}]}}
    retrieved = json.loads(lines.line(2, "relay_to_client", item) or "")
    assert retrieved["event"]["item"]["content"][0] == {
        "type": "input_audio", "audio": {"omitted_audio_bytes": 6}, "transcript": "hi"}
    leak = json.loads(lines.line(3, "upstream_to_relay", json.dumps({
        "type": "error", "error": {"message": "bad key sk-secret-0123456789"}})) or "")
    assert leak["event"]["error"]["message"] == "bad key ***"
    sideband = json.loads(lines.line(4, "sideband_to_relay", b"not json", "sideband-1") or "")
    assert sideband["source"] == "sideband-1" and sideband["event"] == {"unparsed": "not json"}


def test_recording_files_left_unfinished_still_decode(tmp_path: Path) -> None:
    files = RecordingFiles(tmp_path / "rtc_1", {"call_id": "rtc_1", "status": "recording"})
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype("<i2")
    stereo = np.repeat(tone, 2).tobytes()
    for _ in range(3):
        files.append(stereo, ['{"t":0}'])
    # No finish(): as a SIGKILL would leave it.
    rate, audio = read_audio(tmp_path / "rtc_1" / "audio.ogg")
    assert 2.7 <= len(audio) / rate <= 3.0
    assert (tmp_path / "rtc_1" / "events.jsonl").read_text().count("\n") == 3
    files.finish({"call_id": "rtc_1", "status": "complete"})
    rate, audio = read_audio(tmp_path / "rtc_1" / "audio.ogg")
    assert abs(len(audio) / rate - 3.0) < 0.03
    metadata = json.loads((tmp_path / "rtc_1" / "metadata.json").read_text())
    assert metadata["status"] == "complete" and metadata["audio_seconds"] == 3.0


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def make_recording(root: Path, name: str, size: int, age: float) -> None:
    directory = root / name
    directory.mkdir()
    (directory / "audio.ogg").write_bytes(bytes(size))
    (directory / "metadata.json").write_text("{}")
    when = time.time() - age
    for f in directory.iterdir():
        os.utime(f, (when, when))


def test_retention_removes_the_too_old_then_the_oldest_past_the_size(tmp_path: Path) -> None:
    make_recording(tmp_path, "rtc_ancient", 100, age=40 * 86400)
    make_recording(tmp_path, "rtc_old", 1000, age=3 * 3600)
    make_recording(tmp_path, "rtc_middle", 1000, age=2 * 3600)
    make_recording(tmp_path, "rtc_new", 1000, age=3600)
    make_recording(tmp_path, "rtc_live", 1000, age=7200)  # (kept: a live call's)
    make_recording(tmp_path, "rtc_writing", 1000, age=5)  # (kept: written just now)
    (tmp_path / "not-a-recording").mkdir()
    retention = Retention(max_age_seconds=30 * 86400, max_bytes=3500)
    removed = sweep(tmp_path, {"rtc_live"}, retention, time.time())
    assert removed == ["rtc_ancient", "rtc_old", "rtc_middle"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "not-a-recording", "rtc_live", "rtc_new", "rtc_writing"]
    assert sweep(tmp_path, set(), Retention(), time.time()) == []


async def test_retention_runs_after_each_recording(tmp_path: Path) -> None:
    import asyncio

    from relay.recording.recordings import Recordings

    make_recording(tmp_path, "rtc_oldest", 40_000, age=3 * 3600)
    make_recording(tmp_path, "rtc_older", 40_000, age=2 * 3600)
    recordings = Recordings(tmp_path, Retention(max_bytes=42_000), Redactor())
    await recordings.start()
    try:
        assert names(tmp_path) == ["rtc_older"]  # at start
        clock = Clock()
        recorder = recordings.open("rtc_new", {"call_id": "rtc_new"}, clock)
        for _ in range(50):
            clock.now += 0.02
            recorder.uplink([pcm(1000)])
            recorder.downlink(pcm(2000))
        done = asyncio.Event()
        recordings.finish(recorder, {"ended": {}}, lambda _: done.set())
        await asyncio.wait_for(done.wait(), 10)
        assert recordings.status("rtc_new") == "ready"
        # 40 kB and the new one's few kB are over 42 kB: the sweep after the recording removes
        # the oldest (never the new one: it is too recent).
        await until(lambda: not (tmp_path / "rtc_older").exists(), 5, "the sweep")
        assert names(tmp_path) == ["rtc_new"]
    finally:
        await recordings.close()
