"""WebRTC with aiortc: peer connections, ICE on chosen addresses, and a call's audio.

- :mod:`.peer`: :func:`create_peer` and :func:`answer` (ICE restricted to the configured
  addresses, candidates in the answer, the ``oai-events`` channel).
- :mod:`.call_media`: :class:`CallMedia`, a call's audio both ways on its peer.
- :mod:`.tracks`: :class:`PlayoutTrack`, the paced outbound track.
- :mod:`.packet_tap`: the peer's audio packets taken straight from aiortc's receiver.
- :mod:`.internals`: the only code that touches aiortc/aioice private attributes.
- :mod:`.ice_servers`, :mod:`.udp_ports`, :mod:`.rtc_stats`: ICE server URLs, the UDP
  ports calls use, and the RTP statistics a call reports.
"""

from .call_media import CallMedia, MediaOptions
from .peer import EVENTS_LABEL, answer, create_peer, restrict_host_addresses
from .tracks import PlayoutTrack

__all__ = [
    "EVENTS_LABEL",
    "CallMedia",
    "MediaOptions",
    "PlayoutTrack",
    "answer",
    "create_peer",
    "restrict_host_addresses",
]
