"""The load process: N headless aiortc client sessions against one server.

Each session sends the pre-encoded click train (``audio.ClickTrain``) as ``av.Packet``s
paced against an absolute clock, so the load never encodes. Calls are created with the
client's handshake (``relay.client.create_call``). Echoed audio is timed at the RTP
level: the receiver's ``_handle_rtp_packet`` is replaced by a recorder, which also keeps
the packets out of aiortc's jitter buffer (it holds ~80 ms and delays bursts) and its
decoder. The recorder decodes each payload itself to find echoed clicks.

Two scenarios: ``concurrent`` (N calls at once, warm up, measure a window, hang up) and
``sequential`` (calls one after another, server RSS sampled every 10 calls). With
``own_connections`` (the capacity mode) each session makes its HTTP requests on a
connection of its own, kept open from the call's creation to its hang-up: a server of
several workers sharing a port (SO_REUSEPORT) sees the calls spread the way separate
clients would, and each hang-up reaches the worker that owns its call.

With ``spurt_frames`` (the capacity mode) each session talks in turns: every second it
sends the click and the ``spurt_frames`` frames that start with it, then nothing until
the next second (RTP timestamps jump, as with DTX). The echo then comes back in turns, as
a model's replies do, and the relay's playout drains between them. Sent without pause,
the echo is one endless reply: a frame that once arrives after the track's tick delays
the rest of it by 20 ms for good, so a call's round trip moves in whole frames depending
on how its stream started, not on the load (see the README's Benchmark section).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtp import RtpPacket

from relay.client import create_call, hang_up
from relay.webrtc.internals import wrap_rtp_receive

from . import metrics, procstat
from .audio import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    FRAMES_PER_PERIOD,
    LOADS,
    SAMPLE_RATE,
    TIME_BASE,
    ClickDetector,
    ClickTrain,
    OpusDecoder,
    build_click_train,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0
MEDIA_TIMEOUT = 10.0
#: A session's own connection stays open from its call's creation to its hang-up.
OWN_KEEPALIVE = 3600.0


@dataclass
class Pacing:
    """How late the load's tracks were against their clock (a saturated load shows here)."""

    late_max: float = 0.0
    late_frames: int = 0  # frames sent more than 5 ms late


class ClickTrainTrack(MediaStreamTrack):
    """An audio track returning the pre-encoded click train in real time.

    Frame ``i`` is due at ``start + i * 20 ms``; a late frame goes out at once, so the
    stream never drifts. The time each click goes out is recorded in ``trace``.
    """

    kind = "audio"

    def __init__(self, train: ClickTrain, trace: metrics.SessionTrace, pacing: Pacing,
                 spurt_frames: int | None = None) -> None:
        super().__init__()
        self._train = train
        self._trace = trace
        self._pacing = pacing
        #: Frames sent each second from the click on (None: all of them, without pause).
        self._spurt = spurt_frames
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self._start is None:
            self._start = time.monotonic()
        if self._spurt is not None and self._index % FRAMES_PER_PERIOD >= self._spurt:
            # The pause: skip to the next second's first frame (its due time waits it out).
            self._index += FRAMES_PER_PERIOD - self._index % FRAMES_PER_PERIOD
        due = self._start + self._index * FRAME_SECONDS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        late = now - due
        self._pacing.late_max = max(self._pacing.late_max, late)
        if late > 0.005:
            self._pacing.late_frames += 1
        slot = self._index % FRAMES_PER_PERIOD
        packet = av.Packet(self._train.packets[slot])
        packet.pts = self._index * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        if slot == self._train.click_frame:
            self._trace.sent_clicks.append(now + self._train.click_offset / SAMPLE_RATE)
        self._index += 1
        return packet


class LoadSession:
    """One client call: offer, answer, send the click train, record the echo."""

    def __init__(
        self, index: int, train: ClickTrain, base_url: str, pacing: Pacing, datachannel: bool,
        spurt_frames: int | None = None,
    ) -> None:
        self.index = index
        self.trace = metrics.SessionTrace()
        self.call_id: str | None = None
        self.media = asyncio.Event()
        self._base_url = base_url
        self._decoder = OpusDecoder()
        self._detector = ClickDetector()
        #: This session's own HTTP client (``own_connections``), else None: the shared one.
        self.http: aiohttp.ClientSession | None = None
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc.addTrack(ClickTrainTrack(train, self.trace, pacing, spurt_frames))
        transceiver = self._pc.getTransceivers()[0]
        opus = [
            c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"
        ]
        transceiver.setCodecPreferences(opus)
        # Time RTP arrival, not decoded-frame arrival: take packets at the receiver's entry
        # point, and decode them here instead of in aiortc's receive path.
        wrap_rtp_receive(transceiver.receiver, self._on_rtp, forward=False)
        if datachannel:
            self._pc.createDataChannel("oai-events")

    def _on_rtp(self, packet: RtpPacket) -> None:
        now = time.monotonic()
        self.trace.arrivals.append(now)
        self.trace.sequences.append(packet.sequence_number)
        self.media.set()
        try:
            samples = self._decoder.decode(packet.payload)
        except av.FFmpegError:
            return
        onset = self._detector.feed(samples)
        if onset is not None:
            self.trace.received_clicks.append(now + onset / SAMPLE_RATE)

    async def connect(self, http: aiohttp.ClientSession) -> None:
        """Offer, post, apply the answer (ICE on 127.0.0.1 only, no STUN)."""
        answer = await create_call(self.http or http, self._base_url, self._pc,
                                   ice_addresses=["127.0.0.1"])
        self.call_id = answer.call_id

    async def hangup(self, http: aiohttp.ClientSession) -> int | None:
        """Post the hangup; return the HTTP status (None if never connected)."""
        if self.call_id is None:
            return None
        return await hang_up(self.http or http, self._base_url, self.call_id)

    async def close(self) -> None:
        """Close the peer and the session's own HTTP client (safe to call twice)."""
        await self._pc.close()
        if self.http is not None:
            await self.http.close()


async def _open_sessions(
    spec: dict[str, Any], train: ClickTrain, pacing: Pacing, http: aiohttp.ClientSession, n: int
) -> tuple[list[LoadSession], list[str]]:
    """Connect ``n`` sessions one after another (which also spreads their 20 ms phases)."""
    sessions: list[LoadSession] = []
    errors: list[str] = []
    for index in range(n):
        session = LoadSession(index, train, spec["url"], pacing, spec.get("datachannel", False),
                              spec.get("spurt_frames"))
        if spec.get("own_connections"):
            session.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                limit=1, keepalive_timeout=OWN_KEEPALIVE))
        try:
            await asyncio.wait_for(session.connect(http), CONNECT_TIMEOUT)
            sessions.append(session)
        except Exception as exc:  # report, keep going with the others
            errors.append(f"connect {index}: {exc!r}")
            await session.close()
    return sessions, errors


async def _close_sessions(sessions: list[LoadSession], http: aiohttp.ClientSession) -> list[str]:
    """Hang up and close every session; return what went wrong."""
    errors: list[str] = []
    results = await asyncio.gather(
        *(asyncio.wait_for(s.hangup(http), 10.0) for s in sessions), return_exceptions=True
    )
    for session, result in zip(sessions, results, strict=True):
        if isinstance(result, BaseException) or result not in (200, None):
            errors.append(f"hangup {session.index}: {result!r}")
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return errors


async def _prime(spec: dict[str, Any], train: ClickTrain, http: aiohttp.ClientSession) -> list[str]:
    """Make one short call, so one-time costs count as idle RSS.

    Lazy imports (numpy on the first ``to_ndarray``), codec libraries and thread pools
    would otherwise be charged to the sessions of the first measured run.
    """
    sessions, errors = await _open_sessions(spec, train, Pacing(), http, 1)
    try:
        for session in sessions:
            await asyncio.wait_for(session.media.wait(), MEDIA_TIMEOUT)
        await asyncio.sleep(0.5)
    except TimeoutError:
        errors.append("priming call: no media")
    finally:
        errors += await _close_sessions(sessions, http)
    await asyncio.sleep(0.5)  # let the server release the call
    return errors


async def run_concurrent(spec: dict[str, Any]) -> dict[str, Any]:
    """N calls at once: connect, warm up, measure a window, hang up; return the figures."""
    server_pid = int(spec["server_pid"])
    upstream_pid = int(spec.get("upstream_pid") or 0)
    n = int(spec["n"])
    train = build_click_train(LOADS[spec.get("load", "mono")])
    pacing = Pacing()
    async with aiohttp.ClientSession() as http:
        errors = await _prime(spec, train, http)
        rss_idle = procstat.rss_kib(server_pid)
        sessions, failed = await _open_sessions(spec, train, pacing, http, n)
        errors += failed
        try:
            waits = [asyncio.wait_for(s.media.wait(), MEDIA_TIMEOUT) for s in sessions]
            outcome = await asyncio.gather(*waits, return_exceptions=True)
            errors += [
                f"no media {s.index}"
                for s, o in zip(sessions, outcome, strict=True)
                if isinstance(o, BaseException)
            ]
            await asyncio.sleep(float(spec["warmup"]))
            pacing.late_max, pacing.late_frames = 0.0, 0
            start = time.monotonic()
            cpu0 = procstat.cpu_seconds(server_pid)
            each0 = procstat.cpu_seconds_each(server_pid)
            self0 = procstat.cpu_seconds(os.getpid())
            upstream0 = procstat.cpu_seconds(upstream_pid) if upstream_pid else 0.0
            rss_samples: list[int] = []
            duration = float(spec["duration"])
            for second in range(int(duration)):
                await asyncio.sleep(max(0.0, start + second + 1 - time.monotonic()))
                rss_samples.append(procstat.rss_kib(server_pid))
            await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
            rss_samples.append(procstat.rss_kib(server_pid))
            cpu1 = procstat.cpu_seconds(server_pid)
            each1 = procstat.cpu_seconds_each(server_pid)
            self1 = procstat.cpu_seconds(os.getpid())
            upstream1 = procstat.cpu_seconds(upstream_pid) if upstream_pid else 0.0
            end = time.monotonic()
        finally:
            errors += await _close_sessions(sessions, http)
    result = _concurrent_result(
        n, sessions, errors, start, end, cpu1 - cpu0, self1 - self0, rss_idle, rss_samples, pacing
    )
    window = end - start
    # Per process of the server's tree (a supervisor and its workers): how evenly the
    # calls' work was spread.
    result["server_cpu_pct_by_process"] = sorted(
        (round(100.0 * (each1[pid] - each0[pid]) / window, 1) for pid in each1 if pid in each0),
        reverse=True,
    )
    if upstream_pid:
        result["upstream_cpu_pct"] = 100.0 * (upstream1 - upstream0) / window
    result["cpus"] = os.cpu_count()
    return result


def _concurrent_result(
    n: int,
    sessions: list[LoadSession],
    errors: list[str],
    start: float,
    end: float,
    server_cpu: float,
    load_cpu: float,
    rss_idle: int,
    rss_samples: list[int],
    pacing: Pacing,
) -> dict[str, Any]:
    """Turn the recorded traces and probes into the run's JSON record."""
    window = end - start
    stats = [metrics.window_stats(s.trace, start, end) for s in sessions]
    pooled = [pair for st in stats for pair in st.rtts]
    connected = max(1, len(sessions))
    rss_loaded = rss_samples[-1]
    frames_per_s = [st.frames / window for st in stats]
    return {
        "n": n,
        "sessions": len(sessions),
        "window_s": window,
        "server_cpu_s": server_cpu,
        "cpu_pct_per_session": 100.0 * server_cpu / window / connected,
        "server_cpu_pct": 100.0 * server_cpu / window,
        "load_cpu_pct": 100.0 * load_cpu / window,
        "frames_per_s_per_session": sum(frames_per_s) / connected,
        "frames_per_s_min": min(frames_per_s, default=0.0),
        "lost": sum(st.lost for st in stats),
        "stalls": sum(st.stalls for st in stats),
        "max_gap_ms": 1000.0 * max((st.max_gap for st in stats), default=0.0),
        "rtt": metrics.rtt_summary(pooled, start, end),
        "clicks_sent": sum(st.clicks_sent for st in stats),
        "clicks_returned": sum(st.clicks_returned for st in stats),
        "rtt_samples": len(pooled),
        "rss_idle_kib": rss_idle,
        "rss_loaded_kib": rss_loaded,
        "rss_max_kib": max(rss_samples),
        "rss_per_session_kib": (rss_loaded - rss_idle) / connected,
        "load_late_max_ms": 1000.0 * pacing.late_max,
        "load_late_frames": pacing.late_frames,
        "errors": errors,
    }


#: Seconds to wait after a call ends before reading the server's RSS.
RSS_SETTLE = 0.5


async def run_sequential(spec: dict[str, Any]) -> dict[str, Any]:
    """Calls one after another, each exchanging audio briefly; server RSS every 10 calls."""
    server_pid = int(spec["server_pid"])
    calls = int(spec["calls"])
    talk = float(spec["call_audio"])
    train = build_click_train(LOADS[spec.get("load", "mono")])
    pacing = Pacing()
    samples: list[tuple[int, int]] = [(0, procstat.rss_kib(server_pid))]
    errors: list[str] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        for done in range(1, calls + 1):
            opened, failed = await _open_sessions(spec, train, pacing, http, 1)
            errors += failed
            try:
                for session in opened:
                    await asyncio.wait_for(session.media.wait(), MEDIA_TIMEOUT)
                await asyncio.sleep(talk)
            except TimeoutError:
                errors.append(f"call {done}: no media")
            finally:
                errors += await _close_sessions(opened, http)
            if done % 10 == 0 or done == calls:
                # Let the server finish closing the call before reading its memory.
                await asyncio.sleep(RSS_SETTLE)
                samples.append((done, procstat.rss_kib(server_pid)))
    # Warm-up: the first fifth of the calls (at least 10) load codecs and fill pools once.
    warm = [(c, r) for c, r in samples if c >= max(10, calls // 5)] or samples[-1:]
    return {
        "calls": calls,
        "seconds": time.monotonic() - started,
        "rss_samples_kib": samples,
        "rss_idle_kib": samples[0][1],
        "warmup_calls": warm[0][0],
        "rss_first_kib": warm[0][1],
        "rss_last_kib": samples[-1][1],
        # Slope after warm-up; a leak shows as a steady positive slope.
        "rss_slope_kib_per_call": metrics.slope(
            [float(c) for c, _ in warm], [float(r) for _, r in warm]
        ),
        "errors": errors,
    }


def main(spec_json: str, result_path: str) -> int:
    """Run one scenario and write its JSON record to ``result_path``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s load %(message)s")
    spec = json.loads(spec_json)
    runner = run_concurrent if spec["mode"] == "concurrent" else run_sequential
    result = asyncio.run(asyncio.wait_for(runner(spec), float(spec["deadline"])))
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=1)
    return 0
