"""Taking the peer's audio RTP packets straight from aiortc's receiver.

aiortc's receiver runs every packet through RTCP statistics and payload parsing, then
through a playout jitter buffer, a decoder thread and the remote track's queue. The relay
keeps the first part (the peer gets proper receiver reports) and replaces the jitter buffer
with a tap: :class:`PacketTap` takes each depayloaded packet and hands it on at once, and
tells aiortc no frame is ready, so aiortc's decoder thread stays idle and the remote track
yields nothing. :class:`relay.audio.inbound_audio.InboundAudio` then reorders and decodes.

The private attributes this needs (the receiver's jitter buffer, whose ``add(packet)``
contract is small, and the packet's depayloaded bytes) are reached through
:mod:`relay.webrtc.internals`; :func:`tap_audio` returns False when it is not there, so the
caller can fall back to reading the track.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from .internals import depayloaded, has_jitter_buffer, replace_jitter_buffer

logger = logging.getLogger(__name__)

#: Called with (payload type, sequence number, payload) for every audio packet.
PacketHandler = Callable[[int, int, bytes], None]


class PacketTap:
    """Stands in for aiortc's jitter buffer: passes each packet on, never yields a frame."""

    def __init__(self, on_packet: PacketHandler) -> None:
        self._on_packet = on_packet
        #: Packets whose handler raised (the first one is logged with its traceback).
        self.failures = 0

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """aiortc's jitter buffer contract: (send a PLI?, completed encoded frame or None)."""
        try:
            self._on_packet(packet.payload_type, packet.sequence_number, depayloaded(packet))
        except Exception:
            # Raising here would end aiortc's receive loop, and with it the call's media.
            self.failures += 1
            if self.failures == 1:
                logger.exception("handling an inbound audio packet failed; dropping it")
        return False, None


def tap_audio(pc: RTCPeerConnection, on_packet: PacketHandler) -> bool:
    """Route the audio packets ``pc`` receives to ``on_packet`` instead of its tracks.

    Call it once the remote description is applied and before media flows. Returns
    False (and changes nothing) if this aiortc has no jitter buffer to stand in for.
    """
    receivers: list[Any] = [t.receiver for t in pc.getTransceivers() if t.kind == "audio"]
    if not receivers or not all(has_jitter_buffer(r) for r in receivers):
        logger.warning("this aiortc has no receiver jitter buffer to tap; "
                       "reading the audio track instead")
        return False
    for receiver in receivers:
        replace_jitter_buffer(receiver, PacketTap(on_packet))
    return True
