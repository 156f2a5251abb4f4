"""Every reach into aiortc's and aioice's private attributes, in one guarded place.

aiortc and aioice give no public way to do these things the relay needs, so this module
reaches into their internals, and nothing else in the project does:

=======================  =========================================  ===========================
what                     private attribute                          when it is missing
=======================  =========================================  ===========================
negotiated audio codecs  ``RTCRtpTransceiver._codecs``              :class:`AiortcInternalsMoved`
pin ICE host addresses   ``RTCIceGatherer._connection``             :class:`AiortcInternalsMoved`
                         (its ``get_component_candidates``)
tap inbound RTP          ``RTCRtpReceiver.__jitter_buffer``          the caller reads the track
record RTP arrival       ``RTCRtpReceiver._handle_rtp_packet``       :class:`AiortcInternalsMoved`
hear every datagram      ``aioice.Connection.data_received`` and    :class:`AiortcInternalsMoved`
                         ``.request_received`` (called by its
                         ``StunProtocol`` per datagram)
=======================  =========================================  ===========================

:func:`check` lists what an installed aiortc/aioice no longer has; the test suite calls it,
so an upgrade that moves one of these fails loudly, naming the attribute, instead of
failing every call in production. aiortc is pinned below 2 in ``pyproject.toml``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.rtcicetransport import RTCIceGatherer

from ..errors import RelayError

logger = logging.getLogger(__name__)

#: Where RTCRtpReceiver keeps its jitter buffer (a name-mangled private field).
JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
#: RTCRtpReceiver's coroutine that takes every incoming RTP packet.
HANDLE_RTP = "_handle_rtp_packet"
#: RTCRtpTransceiver's negotiated codec list.
CODECS = "_codecs"
#: RTCIceGatherer's aioice Connection.
ICE_CONNECTION = "_connection"

#: aioice Connection's handlers of what its sockets take from the peer: every datagram
#: that is not STUN (DTLS, SRTP, SRTCP), and every STUN request (connectivity and consent
#: checks). Its StunProtocol calls them on ``receiver``, the Connection.
ICE_DATA_RECEIVED = "data_received"
ICE_REQUEST_RECEIVED = "request_received"

#: (owner, attribute) pairs checked on instances that exist before negotiation.
_INSTANCE_ATTRIBUTES = (
    ("RTCRtpTransceiver", CODECS),
    ("RTCIceGatherer", ICE_CONNECTION),
    ("aioice.Connection", "get_component_candidates"),
    ("aioice.Connection", ICE_DATA_RECEIVED),
    ("aioice.Connection", ICE_REQUEST_RECEIVED),
    ("RTCRtpReceiver", JITTER_BUFFER),
    ("RTCRtpReceiver", HANDLE_RTP),
)


class AiortcInternalsMoved(RelayError):
    """The installed aiortc/aioice lacks a private attribute the relay relies on."""

    default_code = "aiortc_internals_moved"

    def __init__(self, owner: str, attribute: str) -> None:
        super().__init__(f"aiortc internals moved: {owner}.{attribute} is missing; "
                         "this aiortc/aioice version is not supported by the relay")
        self.owner = owner
        self.attribute = attribute


# ------------------------------------------------------------------- codecs

def negotiated_audio_codecs(pc: RTCPeerConnection) -> dict[int, str]:
    """The negotiated audio payload types of ``pc`` and their lower-case MIME types, in
    preference order (the first is the one the sender uses)."""
    codecs: dict[int, str] = {}
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            for codec in _require(transceiver, CODECS, "RTCRtpTransceiver"):
                if codec.payloadType is not None:
                    codecs[codec.payloadType] = str(codec.mimeType).lower()
    return codecs


# ---------------------------------------------------------------------- ICE

def pin_host_addresses(pc: RTCPeerConnection, addresses: Iterable[str]) -> None:
    """Make every ICE gatherer of ``pc`` offer host candidates on ``addresses`` only.

    aioice's gatherer takes host addresses from a module-level function that skips
    loopback, then asks ``get_component_candidates(component, addresses)`` for the
    candidates. Wrapping that one method on this one connection swaps the list and leaves
    aioice's module state, and its STUN/TURN candidates, alone.
    """
    pinned = list(addresses)
    for gatherer in ice_gatherers(pc):
        connection = _require(gatherer, ICE_CONNECTION, "RTCIceGatherer")
        original = _require(connection, "get_component_candidates", "aioice.Connection")

        async def get_component_candidates(component: int, addresses: list[str],
                                           timeout: int = 5, original: Any = original) -> Any:
            return await original(component=component, addresses=pinned, timeout=timeout)

        connection.get_component_candidates = get_component_candidates


def ice_connection(gatherer: RTCIceGatherer) -> Any:
    """The aioice ``Connection`` behind ``gatherer`` (its STUN/TURN settings live there)."""
    return _require(gatherer, ICE_CONNECTION, "RTCIceGatherer")


def watch_peer_datagrams(pc: RTCPeerConnection, heard: Callable[[], None]) -> None:
    """Call ``heard()`` for every datagram ``pc``'s peer sends that reaches aioice: media,
    RTCP, DTLS and SCTP, and ICE checks (consent checks included).

    Call it once the transports exist (after ``setRemoteDescription``). ``heard`` runs
    for every packet, so it must be cheap (the call driver counts).
    """
    for gatherer in ice_gatherers(pc):
        connection = _require(gatherer, ICE_CONNECTION, "RTCIceGatherer")
        for name in (ICE_DATA_RECEIVED, ICE_REQUEST_RECEIVED):
            original = _require(connection, name, "aioice.Connection")

            def hear(*args: Any, original: Any = original) -> Any:
                heard()
                return original(*args)

            setattr(connection, name, hear)


def ice_gatherers(pc: RTCPeerConnection) -> list[RTCIceGatherer]:
    """The distinct ICE gatherers of ``pc``'s transports (media and data channel)."""
    seen: dict[int, RTCIceGatherer] = {}
    dtls = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    for transport in dtls:
        gatherer = transport.transport.iceGatherer
        seen.setdefault(id(gatherer), gatherer)
    return list(seen.values())


# ---------------------------------------------------------------------- RTP

def has_jitter_buffer(receiver: RTCRtpReceiver) -> bool:
    """Whether ``receiver`` keeps a jitter buffer where :func:`replace_jitter_buffer` looks."""
    return hasattr(receiver, JITTER_BUFFER)


def replace_jitter_buffer(receiver: RTCRtpReceiver, stand_in: Any) -> None:
    """Put ``stand_in`` where ``receiver`` keeps its jitter buffer.

    ``stand_in.add(packet)`` must honour the jitter buffer's contract: return
    ``(send a PLI?, completed encoded frame or None)``.
    """
    _require(receiver, JITTER_BUFFER, "RTCRtpReceiver")
    setattr(receiver, JITTER_BUFFER, stand_in)


RtpHandler = Callable[[Any, int], Awaitable[None]]


def wrap_rtp_receive(receiver: RTCRtpReceiver, before: Callable[[Any], None], *,
                     forward: bool = True) -> None:
    """Call ``before(packet)`` for every RTP packet ``receiver`` takes, on arrival, before
    any jitter buffer (used to time audio as it reaches a peer). With ``forward=False``
    the packet then goes no further: a load generator that decodes it itself skips
    aiortc's receive path."""
    handle: RtpHandler = _require(receiver, HANDLE_RTP, "RTCRtpReceiver")

    async def record(packet: Any, arrival_time_ms: int) -> None:
        before(packet)
        if forward:
            await handle(packet, arrival_time_ms)

    setattr(receiver, HANDLE_RTP, record)


# -------------------------------------------------------------------- check

async def check() -> list[str]:
    """``owner.attribute`` for each private attribute the installed aiortc/aioice lacks.

    It builds a throwaway peer connection with an audio transceiver and a data channel
    (no socket is opened: nothing is gathered) and looks at the real instances.
    """
    missing: list[str] = []
    pc = RTCPeerConnection()
    try:
        transceiver: RTCRtpTransceiver = pc.addTransceiver("audio")
        pc.createDataChannel("probe")
        receiver = transceiver.receiver
        gatherer = receiver.transport.transport.iceGatherer
        connection = getattr(gatherer, ICE_CONNECTION, None)
        owners: dict[str, Any] = {
            "RTCRtpTransceiver": transceiver,
            "RTCIceGatherer": gatherer,
            "aioice.Connection": connection,
            "RTCRtpReceiver": receiver,
        }
        for owner, attribute in _INSTANCE_ATTRIBUTES:
            if not hasattr(owners[owner], attribute):
                missing.append(f"{owner}.{attribute}")
    finally:
        await pc.close()
    return missing


def _require(obj: Any, attribute: str, owner: str) -> Any:
    try:
        return getattr(obj, attribute)
    except AttributeError:
        raise AiortcInternalsMoved(owner, attribute) from None
