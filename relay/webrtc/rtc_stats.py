"""A call's RTP statistics from aiortc (``RTCPeerConnection.getStats()``), summarized.

aiortc reports jitter in RTP timestamp units; the summary gives it in milliseconds at
the negotiated codec's clock rate (48 kHz for Opus, 8 kHz for G.711 and G.722).
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
)

from ..audio import OPUS_RATE
from .internals import negotiated_audio_codecs


def clock_rate(pc: RTCPeerConnection) -> int:
    """The RTP clock rate of the negotiated audio codec."""
    mime = next(iter(negotiated_audio_codecs(pc).values()), "audio/opus")
    return OPUS_RATE if mime.lower() == "audio/opus" else 8000


async def rtp_summary(pc: RTCPeerConnection) -> dict[str, Any]:
    """Packets, loss, jitter and round-trip time of the call's audio, both ways."""
    report = await pc.getStats()
    per_ms = clock_rate(pc) / 1000
    summary: dict[str, Any] = {"inbound": None, "outbound": None, "remote_inbound": None}
    for stats in report.values():
        if isinstance(stats, RTCInboundRtpStreamStats):
            summary["inbound"] = {"packets_received": stats.packetsReceived,
                                  "packets_lost": stats.packetsLost,
                                  "jitter_ms": round(stats.jitter / per_ms, 2)}
        elif isinstance(stats, RTCRemoteInboundRtpStreamStats):
            # What the peer's receiver reports said about the audio the relay sends.
            # Its round-trip time is None until a report answers one of the relay's own
            # (a receiver report naming no sender report: the call was too short).
            rtt = stats.roundTripTime
            summary["remote_inbound"] = {"packets_received": stats.packetsReceived,
                                         "packets_lost": stats.packetsLost,
                                         "fraction_lost": stats.fractionLost,
                                         "jitter_ms": round(stats.jitter / per_ms, 2),
                                         "round_trip_time_ms": None if rtt is None
                                         else round(rtt * 1000, 2)}
        elif isinstance(stats, RTCOutboundRtpStreamStats):
            summary["outbound"] = {"packets_sent": stats.packetsSent,
                                   "bytes_sent": stats.bytesSent}
    return summary
