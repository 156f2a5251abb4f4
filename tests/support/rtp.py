"""Reply audio timed as it reaches a test's client, packet by packet.

Timing decoded frames would include aiortc's jitter buffer (about 80 ms, and it holds a
burst's tail), so the barge-in tests time each RTP packet as it reaches the receiver,
through ``relay.webrtc.internals`` (the one place that touches aiortc's private parts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection

from relay.webrtc.internals import wrap_rtp_receive


@dataclass
class RtpArrival:
    """One RTP packet of reply audio as it reached the client, before any jitter buffer."""

    at: float
    sequence: int
    timestamp: int
    payload_type: int
    payload: bytes


@dataclass
class RtpRecorder:
    """Every RTP packet a peer receives, timed on arrival (``time.monotonic()``)."""

    packets: list[RtpArrival] = field(default_factory=list)

    def record(self, packet: Any) -> None:
        """Keep ``packet`` with the time it arrived."""
        self.packets.append(RtpArrival(time.monotonic(), packet.sequence_number,
                                       packet.timestamp, packet.payload_type,
                                       bytes(packet.payload)))

    def levels(self) -> list[tuple[float, float]]:
        """``(arrival time, RMS level)`` of each received Opus packet, decoded in order."""
        decoder = av.CodecContext.create("opus", "r")
        levels = []
        for packet in self.packets:
            frames = decoder.decode(av.Packet(packet.payload))
            parts = [f.to_ndarray().astype(np.float64).ravel() for f in frames]
            x = np.concatenate(parts) if parts else np.zeros(0)
            if frames and frames[0].format.name.startswith("flt"):
                x *= 32767  # the native decoder gives floats in [-1, 1]
            levels.append((packet.at, float(np.sqrt(np.mean(x**2))) if len(x) else 0.0))
        return levels


def record_rtp(pc: RTCPeerConnection) -> RtpRecorder:
    """Record every RTP packet ``pc``'s receivers take from now on; the packets still go
    on to aiortc. Call it once the transceivers exist and before the call connects (a
    ``CallClient`` has its transceiver as soon as it is built)."""
    recorder = RtpRecorder()
    transceivers = pc.getTransceivers()
    assert transceivers, "no transceiver yet: add the tracks first"
    for transceiver in transceivers:
        wrap_rtp_receive(transceiver.receiver, recorder.record)
    return recorder
