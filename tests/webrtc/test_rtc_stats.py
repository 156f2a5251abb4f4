"""The RTP statistics summary of a call (``relay.webrtc.rtc_stats``)."""

from __future__ import annotations

import datetime

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCStatsReport,
)

from relay.webrtc.rtc_stats import rtp_summary

NOW = datetime.datetime.now(datetime.UTC)


def remote_inbound(round_trip_time: float | None) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=NOW, type="remote-inbound-rtp", id="remote", ssrc=1, kind="audio",
        transportId="t", packetsReceived=90, packetsLost=2, jitter=480,
        roundTripTime=round_trip_time,  # type: ignore[arg-type]
        fractionLost=3)


async def summary_of(*stats: object) -> dict[str, object]:
    pc = RTCPeerConnection()
    report = RTCStatsReport()
    for item in stats:
        report.add(item)

    async def get_stats() -> RTCStatsReport:
        return report

    pc.getStats = get_stats  # type: ignore[method-assign]
    try:
        return await rtp_summary(pc)
    finally:
        await pc.close()


async def test_rtc_stats_summary_in_milliseconds() -> None:
    inbound = RTCInboundRtpStreamStats(
        timestamp=NOW, type="inbound-rtp", id="in", ssrc=2, kind="audio", transportId="t",
        packetsReceived=100, packetsLost=1, jitter=96)
    summary = await summary_of(inbound, remote_inbound(0.0123))
    assert summary["inbound"] == {"packets_received": 100, "packets_lost": 1, "jitter_ms": 2.0}
    assert summary["remote_inbound"] == {
        "packets_received": 90, "packets_lost": 2, "fraction_lost": 3, "jitter_ms": 10.0,
        "round_trip_time_ms": 12.3}
    assert summary["outbound"] is None


async def test_rtc_stats_summary_without_a_round_trip_time_yet() -> None:
    """The peer's first receiver report can come before the relay's first sender report:
    aiortc then has no round-trip time (None), and the summary says so instead of failing
    (which left an ended call with the figures of its last mid-call read)."""
    summary = await summary_of(remote_inbound(None))
    remote = summary["remote_inbound"]
    assert isinstance(remote, dict) and remote["round_trip_time_ms"] is None
    assert remote["packets_received"] == 90
