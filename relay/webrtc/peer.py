"""Peer connections: configuration, ICE host addresses, and answering an offer.

aiortc gathers all its candidates before it answers (no trickle) and, with no ICE servers
configured, falls back to a public STUN server; aioice never offers 127.0.0.1. So the
relay always passes its ICE servers explicitly (empty by default: nothing is contacted)
and can pin the host addresses it advertises, which operators need on multi-homed hosts
and in containers, and which keeps tests on loopback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcdatachannel import RTCDataChannel

from ..errors import InvalidRequest, RelayError
from . import internals
from .ice_servers import parse_ice_server
from .offer_check import check_offer
from .udp_ports import UdpPorts

logger = logging.getLogger(__name__)

#: The data channel the Realtime API's events travel on.
EVENTS_LABEL = "oai-events"


def create_peer(ice_servers: Sequence[str]) -> RTCPeerConnection:
    """A peer connection using exactly ``ice_servers`` (none means no STUN at all):
    ``stun:`` and ``turn:``/``turns:`` URLs, TURN credentials in them
    (:mod:`relay.webrtc.ice_servers`)."""
    servers = []
    for text in ice_servers:
        server = parse_ice_server(text)
        servers.append(RTCIceServer(urls=server.url, username=server.username,
                                    credential=server.credential))
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def restrict_host_addresses(pc: RTCPeerConnection, addresses: Sequence[str]) -> None:
    """Make every ICE transport of ``pc`` gather host candidates on ``addresses`` only.

    Call it after the transports exist (after ``setRemoteDescription``, or after adding
    tracks and channels on the offering side) and before ``setLocalDescription``.
    With no addresses this does nothing and aioice picks the interfaces itself.
    """
    if addresses:
        internals.pin_host_addresses(pc, addresses)


async def answer(
    pc: RTCPeerConnection,
    offer_sdp: str,
    *,
    addresses: Sequence[str] = (),
    negotiated_channel_id: int | None = None,
    ports: UdpPorts | None = None,
    public_addresses: Sequence[str] = (),
) -> tuple[str, RTCDataChannel | None]:
    """Apply the client's offer and return the SDP answer, candidates included.

    With ``negotiated_channel_id`` the relay opens the ``oai-events`` channel the client
    pre-created out of band (``?dcid=N``) and returns it. With ``ports`` the host
    candidates' sockets are opened there; with ``public_addresses`` each host candidate is
    also offered on the public address of a 1:1 NAT in front of the relay. Raises
    :class:`InvalidRequest` for an offer that is not SDP aiortc can use (see
    :func:`~relay.webrtc.offer_check.check_offer`), or that needs two ICE transports
    while every call shares one port (no BUNDLE).
    """
    check_offer(offer_sdp)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, KeyError, … on bad SDP
        raise InvalidRequest(f"The SDP offer could not be applied: {_short(exc)}",
                             code="invalid_offer", param="sdp") from exc
    channel = None
    if negotiated_channel_id is not None:
        if pc.sctp is None:
            raise InvalidRequest("dcid was given but the offer has no data channel section.",
                                 code="invalid_offer", param="dcid")
        channel = pc.createDataChannel(EVENTS_LABEL, negotiated=True, id=negotiated_channel_id)
    if ports is None:
        restrict_host_addresses(pc, addresses)
    else:
        if ports.single and len(internals.ice_gatherers(pc)) > 1:
            # Its transports would share one username fragment on one port: no way to tell
            # their packets apart. Every browser and SDK bundles.
            raise InvalidRequest("The offer does not bundle its media (a=group:BUNDLE), "
                                 "which this relay needs: it carries every call on one "
                                 "UDP port.", code="invalid_offer", param="sdp")
        internals.gather_on_sockets(pc, addresses, ports.open)
    if public_addresses:
        internals.announce_public_addresses(pc, public_addresses)
    try:
        description = await pc.createAnswer()
    except RelayError:
        raise
    except Exception as exc:  # a description aiortc applied but cannot answer (e.g. a
        # media section whose direction it cannot read, or one left without a transport)
        raise InvalidRequest(f"The SDP offer could not be answered: {_short(exc)}",
                             code="invalid_offer", param="sdp") from exc
    try:
        await pc.setLocalDescription(description)
    except RelayError:
        raise
    except Exception as exc:  # what check_offer does not foresee: still the offer's fault
        raise InvalidRequest(f"The SDP offer could not be answered: {_short(exc)}",
                             code="invalid_offer", param="sdp") from exc
    return pc.localDescription.sdp, channel


def remote_max_message_size(pc: RTCPeerConnection, default: int) -> int:
    """The largest data channel message the peer takes, from its ``a=max-message-size``
    (0: any size); ``default`` when its description names none."""
    description = pc.remoteDescription
    for line in (description.sdp if description is not None else "").splitlines():
        if line.startswith("a=max-message-size:"):
            value = line.partition(":")[2].strip()
            if value.isdigit():
                return int(value)
    return default


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
