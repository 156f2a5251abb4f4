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
host sockets the relay   ``aioice.Connection.get_component_``       :class:`AiortcInternalsMoved`
opens (port range, one   ``candidates``, ``._protocols``,
shared port)             ``aioice.ice.StunProtocol`` (its
                         ``transactions``, ``datagram_received``,
                         ``connection_lost``),
                         ``aioice.ice.server_reflexive_candidate``
take SRTP media in the   ``aioice.Connection._queue``,              the packets go through
datagram callback (no    ``RTCDtlsTransport._rx_srtp``,             aiortc's queue and task
queue, no task wake-up)  ``._handle_rtp_data``, ``.__rx_bytes``,
                         ``.__rx_packets``, ``._state`` (and what its
                         ``_recv_next`` does with SRTP)
send RTP and RTCP        ``RTCDtlsTransport._send_rtp``,            the packets go through
without coroutines       ``._tx_srtp``, ``.__tx_bytes``,            aiortc's coroutines
                         ``.__tx_packets``, ``._state``,
                         ``aioice.Connection._nominated`` (and
                         what ``_send_rtp``, ``Connection.sendto``
                         and ``StunProtocol.send_data`` do)
send Opus from a timer   ``RTCRtpSender._run_rtp`` (replaced on     aiortc's sender loop
(no task, no packet      the instance), ``.__rtp_started``,         sends the track
objects per frame)       ``.__rtp_exited``, ``.__track``,
                         ``.__mid``, ``.__rtp_header_extensions_
                         map``, ``.__ntp_timestamp``,
                         ``.__rtp_timestamp``, ``.__octet_count``,
                         ``.__packet_count`` (and what its loop
                         does with a pre-encoded packet)
bound SCTP reassembly    ``RTCSctpTransport._get_inbound_stream``,  :class:`AiortcInternalsMoved`
                         ``._inbound_streams``,
                         ``InboundStream.reassembly``,
                         ``.sequence_number``
=======================  =========================================  ===========================

:func:`check` lists what an installed aiortc/aioice no longer has; the test suite calls it,
so an upgrade that moves one of these fails loudly, naming the attribute, instead of
failing every call in production. aiortc is pinned below 2 in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Iterator
from dataclasses import dataclass
from struct import pack_into
from typing import Any, Protocol, cast

import aioice.ice
import pylibsrtp
from aioice import Candidate, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    clock,
    rtcdtlstransport,
    rtcrtpsender,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcsctptransport import SCTP_DATA_LAST_FRAG, SCTP_DATA_UNORDERED, InboundStream
from aiortc.rtp import RtpPacket, is_rtcp

from ..base.inline import resume
from ..errors import RelayError

logger = logging.getLogger(__name__)

#: Where RTCRtpReceiver keeps its jitter buffer (a name-mangled private field).
JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
#: RTCRtpReceiver's coroutine that takes every incoming RTP packet.
HANDLE_RTP = "_handle_rtp_packet"
#: Where RTCRtpReceiver's packet handler leaves an RTP packet's depayloaded bytes, before
#: it hands the packet to the jitter buffer (``packet._data = depayload(...)``).
RTP_DEPAYLOADED = "_data"
#: RTCRtpTransceiver's negotiated codec list.
CODECS = "_codecs"
#: RTCIceGatherer's aioice Connection.
ICE_CONNECTION = "_connection"

#: aioice Connection's handlers of what its sockets take from the peer: every datagram
#: that is not STUN (DTLS, SRTP, SRTCP), and every STUN request (connectivity and consent
#: checks). Its StunProtocol calls them on ``receiver``, the Connection.
ICE_DATA_RECEIVED = "data_received"
ICE_REQUEST_RECEIVED = "request_received"

#: aioice Connection's list of its sockets' protocols (pairs are formed from it).
ICE_PROTOCOLS = "_protocols"
#: aioice Connection's queue of received datagrams, which the DTLS transport's task reads.
ICE_QUEUE = "_queue"

#: RTCDtlsTransport's SRTP session for what the peer sends (None until the handshake), its
#: coroutine taking each unprotected RTP packet, and its receive counters (name-mangled).
DTLS_RX_SRTP = "_rx_srtp"
#: RTCDtlsTransport's state as its enum (its public ``state`` builds a string from it).
DTLS_STATE = "_state"
DTLS_HANDLE_RTP = "_handle_rtp_data"
DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
#: What RTCDtlsTransport's reader does with an SRTP packet, all of which the inline path
#: does in its place (checked in its source).
_DTLS_SRTP_STEPS = ("self.__rx_bytes += len(data)", "self.__rx_packets += 1",
                    "arrival_time_ms = clock.current_ms()",
                    "data = self._rx_srtp.unprotect(data)",
                    "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)")

#: (owner, attribute) pairs checked on module-level names and classes of aioice.
_AIOICE_ATTRIBUTES = (
    ("aioice.ice", "StunProtocol"),
    ("aioice.ice", "server_reflexive_candidate"),
    ("aioice.ice.StunProtocol", "datagram_received"),
    ("aioice.ice.StunProtocol", "connection_made"),
    ("aioice.ice.StunProtocol", "connection_lost"),
    ("aioice.ice.StunProtocol", "close"),
)

#: (owner, attribute) pairs checked on instances that exist before negotiation.
_INSTANCE_ATTRIBUTES = (
    ("aioice.Connection", ICE_PROTOCOLS),
    ("RTCRtpTransceiver", CODECS),
    ("RTCIceGatherer", ICE_CONNECTION),
    ("aioice.Connection", "get_component_candidates"),
    ("aioice.Connection", ICE_DATA_RECEIVED),
    ("aioice.Connection", ICE_REQUEST_RECEIVED),
    ("RTCRtpReceiver", JITTER_BUFFER),
    ("RTCRtpReceiver", HANDLE_RTP),
    ("aioice.ice.StunProtocol()", "receiver"),
    ("aioice.ice.StunProtocol()", "transactions"),
    ("aioice.Connection", ICE_QUEUE),
    ("RTCDtlsTransport", DTLS_RX_SRTP),
    ("RTCDtlsTransport", DTLS_STATE),
    ("RTCDtlsTransport", DTLS_HANDLE_RTP),
    ("RTCDtlsTransport", DTLS_RX_BYTES),
    ("RTCDtlsTransport", DTLS_RX_PACKETS),
)

#: (owner, attribute) pairs the inline send needs, checked on the same instances.
_SEND_ATTRIBUTES = (
    ("aioice.Connection", "_nominated"),
    ("RTCDtlsTransport", "_send_rtp"),
    ("RTCDtlsTransport", "_tx_srtp"),
    ("RTCDtlsTransport", "_RTCDtlsTransport__tx_bytes"),
    ("RTCDtlsTransport", "_RTCDtlsTransport__tx_packets"),
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
        if transport is None:  # a media section the offer rejected or left without one
            continue
        gatherer = transport.transport.iceGatherer
        seen.setdefault(id(gatherer), gatherer)
    return list(seen.values())


# ------------------------------------------------------------- host sockets

#: Most datagrams a shared port reads per wake-up (then other callbacks get their turn).
READ_BATCH = 256
MAX_DATAGRAM = 65536

#: Opens the host socket of an aioice ``Connection`` on an address; returns its protocol.
HostSocketOpener = Callable[[Any, str], Awaitable[Any]]


def stun_protocol(connection: Any) -> Any:
    """A new aioice ``StunProtocol`` for ``connection``, for a socket the relay opens."""
    return _require(aioice.ice, "StunProtocol", "aioice.ice")(connection)


def gather_on_sockets(pc: RTCPeerConnection, addresses: Iterable[str],
                      open_socket: HostSocketOpener) -> None:
    """Make every ICE gatherer of ``pc`` take its host candidates on the sockets
    ``open_socket(connection, address)`` opens, on ``addresses`` (empty: the interface
    addresses aioice found); then, as aioice would, ask its STUN server about them and
    allocate on its TURN server.

    aioice binds each host socket to a port the OS picks, inside
    ``get_component_candidates``. Replacing that one method on this one connection opens
    the sockets where the relay says, and leaves aioice's own TURN allocation in place
    (asked for with no addresses, aioice opens no host socket of its own).
    """
    pinned = list(addresses)
    reflexive = _require(aioice.ice, "server_reflexive_candidate", "aioice.ice")
    for gatherer in ice_gatherers(pc):
        connection = _require(gatherer, ICE_CONNECTION, "RTCIceGatherer")
        original = _require(connection, "get_component_candidates", "aioice.Connection")
        protocols = _require(connection, ICE_PROTOCOLS, "aioice.Connection")

        async def get_component_candidates(
                component: int, addresses: list[str], timeout: int = 5,
                connection: Any = connection, original: Any = original,
                protocols: Any = protocols) -> list[Any]:
            hosts = []
            for address in pinned or addresses:
                protocol = await open_socket(connection, address)
                host, port = protocol.transport.get_extra_info("sockname")[:2]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", host), component=component,
                    transport="udp", priority=candidate_priority(component, "host"),
                    host=host, port=port, type="host")
                protocols.append(protocol)  # closed with the connection from now on
                hosts.append(protocol)
            candidates = [p.local_candidate for p in hosts]
            if connection.stun_server:
                candidates += await _reflexive(reflexive, connection.stun_server, hosts, timeout)
            relayed: list[Any] = await original(component=component, addresses=[],
                                                timeout=timeout)
            return candidates + relayed

        connection.get_component_candidates = get_component_candidates


def announce_public_addresses(pc: RTCPeerConnection, public: Iterable[str]) -> None:
    """Make every ICE gatherer of ``pc`` also offer, for each host candidate, a
    server-reflexive candidate on the public address of its family, same port: what a
    STUN server would report behind a 1:1 NAT (a cloud instance's public IP, a Docker host
    publishing the relay's ports, a Kubernetes node with hostPort). Packets to it reach
    the host socket through the NAT; nothing else changes. Call it after the other
    gathering changes (it wraps whatever gathers).
    """
    by_family = {ipaddress.ip_address(address).version: address for address in public}
    for gatherer in ice_gatherers(pc):
        connection = _require(gatherer, ICE_CONNECTION, "RTCIceGatherer")
        gather = _require(connection, "get_component_candidates", "aioice.Connection")

        async def get_component_candidates(component: int, addresses: list[str],
                                           timeout: int = 5, gather: Any = gather) -> Any:
            candidates = await gather(component=component, addresses=addresses,
                                      timeout=timeout)
            announced = []
            for candidate in candidates:
                address = by_family.get(ipaddress.ip_address(candidate.host).version)
                if candidate.type == "host" and address and address != candidate.host:
                    announced.append(Candidate(
                        foundation=candidate_foundation("srflx", "udp", candidate.host),
                        component=candidate.component, transport="udp",
                        priority=candidate_priority(candidate.component, "srflx"),
                        host=address, port=candidate.port, type="srflx",
                        related_address=candidate.host, related_port=candidate.port))
            return candidates + announced

        connection.get_component_candidates = get_component_candidates


async def _reflexive(query: Any, server: Any, hosts: list[Any], timeout: float) -> list[Any]:
    """The server-reflexive candidates of the IPv4 ``hosts`` (as aioice asks: in parallel)."""
    tasks = [asyncio.ensure_future(query(protocol, server)) for protocol in hosts
             if ipaddress.ip_address(protocol.local_candidate.host).version == 4]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    return [task.result()[0] for task in done if task.exception() is None]


class SharedPort:
    """One UDP socket carrying the ICE connections of many calls.

    Each connection gets an aioice ``StunProtocol`` of its own whose transport is a view
    of this socket. A datagram goes to its connection by its sender's address, learnt from
    the connectivity checks: a STUN request names the connection by the ICE username
    fragment in its USERNAME (``ours:theirs``), and once it proves it knows that
    connection's password (MESSAGE-INTEGRITY), its source address is routed there. A STUN
    response goes to the connection that asked (by transaction id). Everything else
    (DTLS, SRTP) goes by address, and from an unknown address is dropped.

    It reads the socket itself rather than through an asyncio datagram transport, which
    takes one datagram per turn of the event loop: enough for one call's socket, far too
    few for every call's. Here each wake-up drains up to :data:`READ_BATCH` datagrams.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self.sockname: tuple[Any, ...] = sock.getsockname()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self._by_ufrag: dict[str, list[Any]] = {}
        self._by_address: dict[tuple[str, int], Any] = {}
        self._protocols: set[Any] = set()
        #: Datagrams no connection would take, and datagrams the socket could not send.
        self.unroutable = 0
        self.unsent = 0
        #: Datagrams whose connection raised while taking them.
        self.failures = 0

    def __len__(self) -> int:
        return len(self._protocols)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram; one the kernel cannot take now is dropped, as UDP may."""
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError:
            self.unsent += 1

    def close(self) -> None:
        """Stop reading and close the socket; safe to call twice."""
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(READ_BATCH):
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error about an earlier send: nothing to read
            try:
                self.datagram_received(data, addr)
            except Exception:
                # One connection's failure must not stop the socket every call shares.
                self.failures += 1
                if self.failures == 1:
                    logger.exception("a connection on the shared UDP port failed a datagram")

    def attach(self, connection: Any) -> Any:
        """A ``StunProtocol`` for ``connection``, on this socket."""
        protocol = stun_protocol(connection)
        protocol.connection_made(_PortView(self, protocol))
        self._by_ufrag.setdefault(connection.local_username, []).append(protocol)
        self._protocols.add(protocol)
        return protocol

    def detach(self, protocol: Any) -> None:
        """Forget ``protocol`` (its connection closed it)."""
        self._protocols.discard(protocol)
        ufrag = protocol.receiver.local_username
        same = [p for p in self._by_ufrag.get(ufrag, []) if p is not protocol]
        if same:
            self._by_ufrag[ufrag] = same
        else:
            self._by_ufrag.pop(ufrag, None)
        for address in [a for a, p in self._by_address.items() if p is protocol]:
            del self._by_address[address]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Route one datagram (RFC 7983: a first byte below 4 is STUN)."""
        address = (addr[0], addr[1])
        if data and data[0] < 4:
            protocol = self._stun_owner(data, address)
        else:
            protocol = self._by_address.get(address)
        if protocol is None:
            self.unroutable += 1
            return
        protocol.datagram_received(data, address)

    def _stun_owner(self, data: bytes, address: tuple[str, int]) -> Any:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return None
        if message.message_class != stun.Class.REQUEST:
            known = self._by_address.get(address)
            if known is not None and message.transaction_id in known.transactions:
                return known
            return next((p for p in self._protocols
                         if message.transaction_id in p.transactions), None)
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return self._by_address.get(address)
        candidates = self._by_ufrag.get(username.partition(":")[0], [])
        for protocol in candidates:
            if message.check_message_integrity(protocol.receiver.local_password.encode()):
                self._by_address[address] = protocol
                return protocol
        # Not authenticated: aioice answers it with an error, and no address is learnt.
        return candidates[0] if candidates else None


class _PortView:
    """A ``StunProtocol``'s transport on a :class:`SharedPort`: sends on the shared
    socket; closing it detaches the protocol and leaves the socket open."""

    def __init__(self, port: SharedPort, protocol: Any) -> None:
        self._port = port
        self._protocol = protocol
        self._closed = False

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._closed:
            self._port.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # (Not "socket": the shared socket's options are not one connection's to set.)
        return self._port.sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._port.detach(self._protocol)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


# ---------------------------------------------------------------------- RTP

def has_jitter_buffer(receiver: RTCRtpReceiver) -> bool:
    """Whether ``receiver`` keeps a jitter buffer where :func:`replace_jitter_buffer` looks."""
    return hasattr(receiver, JITTER_BUFFER)


def depayloaded(packet: RtpPacket) -> bytes:
    """The codec payload of ``packet`` as aiortc's receiver depayloaded it (for Opus and
    G.711 the RTP payload itself: that is the fallback)."""
    data: bytes = getattr(packet, RTP_DEPAYLOADED, packet.payload)
    return data


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


@dataclass
class InlineRtp:
    """What the inline receive path of one peer connection did."""

    #: SRTP media packets taken in the datagram callback.
    packets: int = 0
    #: Packets whose SRTP check failed (dropped, as aiortc drops them).
    unprotect_failed: int = 0
    #: Packets whose handling had to wait for something, and was finished by a task.
    deferred: int = 0
    #: Packets whose handling raised (logged once; the next packet is taken as usual).
    failures: int = 0


def receive_rtp_inline(pc: RTCPeerConnection) -> InlineRtp | None:
    """Take the peer's SRTP media packets in the datagram callback that brings them.

    aiortc hands every datagram to aioice's queue, and the DTLS transport's task, woken
    once per datagram, takes it out, unprotects it and runs the RTP path. For an RTP
    packet (not RTCP, not DTLS) arriving while that queue is empty, this runs the same
    steps at once, in the callback: the counters, ``clock.current_ms()``, ``unprotect``,
    then the transport's own ``_handle_rtp_data`` (parse, route, the receiver's RTCP
    statistics and our packet tap). That coroutine does not wait for anything on an audio
    receiver whose jitter buffer is our tap, so it runs to its end inside one ``send``;
    should it ever wait, a task finishes it. Anything else, or with something queued
    (order is kept), goes through aiortc's path as before.

    Call it after the remote description is applied and before
    :func:`watch_peer_datagrams` (which must hear the packets taken here too). Returns
    None, changing nothing, when this aiortc/aioice lacks what it needs.
    """
    pairs = _with_connections(t.receiver.transport for t in pc.getTransceivers())
    if not pairs or not all(_inline_capable(dtls, conn) for dtls, conn in pairs):
        logger.warning("this aiortc/aioice cannot take SRTP inline; using its queue")
        return None
    counters = InlineRtp()
    for dtls, connection in pairs:
        _take_rtp_inline(dtls, connection, counters)
    return counters


def _with_connections(transports: Iterable[RTCDtlsTransport | None],
                      ) -> list[tuple[RTCDtlsTransport, Any]]:
    """Each distinct DTLS transport of ``transports`` with its aioice Connection (None
    where the gatherer has none)."""
    pairs: dict[int, tuple[RTCDtlsTransport, Any]] = {}
    for dtls in transports:
        if dtls is not None:
            connection = getattr(dtls.transport.iceGatherer, ICE_CONNECTION, None)
            pairs.setdefault(id(dtls), (dtls, connection))
    return list(pairs.values())


def _inline_capable(dtls: RTCDtlsTransport, connection: Any) -> bool:
    return (connection is not None and hasattr(connection, ICE_QUEUE)
            and hasattr(connection, ICE_DATA_RECEIVED)
            and _dtls_connected_state() is not None
            and all(hasattr(dtls, name) for name in (DTLS_RX_SRTP, DTLS_STATE, DTLS_HANDLE_RTP,
                                                     DTLS_RX_BYTES, DTLS_RX_PACKETS)))


def _dtls_connected_state() -> Any:
    """The value of RTCDtlsTransport's ``_state`` once connected (None: not found)."""
    return getattr(getattr(rtcdtlstransport, "State", None), "CONNECTED", None)


def _take_rtp_inline(dtls: RTCDtlsTransport, connection: Any, counters: InlineRtp) -> None:
    queue: asyncio.Queue[Any] = getattr(connection, ICE_QUEUE)
    connected = _dtls_connected_state()
    original: Callable[[bytes, int], None] = getattr(connection, ICE_DATA_RECEIVED)
    pending: set[asyncio.Task[None]] = set()

    def data_received(data: bytes, component: int) -> None:
        srtp = getattr(dtls, DTLS_RX_SRTP)
        # RFC 7983: 128-191 is RTP or RTCP; the transport's task runs only once connected.
        if (srtp is None or not data or not 127 < data[0] < 192 or queue.qsize()
                or is_rtcp(data) or getattr(dtls, DTLS_STATE) is not connected):
            original(data, component)
            return
        setattr(dtls, DTLS_RX_BYTES, getattr(dtls, DTLS_RX_BYTES) + len(data))
        setattr(dtls, DTLS_RX_PACKETS, getattr(dtls, DTLS_RX_PACKETS) + 1)
        arrival_time_ms = clock.current_ms()
        counters.packets += 1
        try:
            data = srtp.unprotect(data)
        except pylibsrtp.Error:
            counters.unprotect_failed += 1
            return
        try:
            # Looked up per packet: whatever wraps the handler later is honoured too.
            handle: Callable[..., Coroutine[Any, Any, None]] = getattr(dtls, DTLS_HANDLE_RTP)
            task = _run_inline(handle(data, arrival_time_ms=arrival_time_ms))
        except Exception:
            counters.failures += 1
            if counters.failures == 1:
                logger.exception("taking an inbound RTP packet failed; dropping it")
            return
        if task is not None:
            counters.deferred += 1
            pending.add(task)
            task.add_done_callback(finished)

    def finished(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            counters.failures += 1
            if counters.failures == 1:
                logger.error("taking an inbound RTP packet failed; dropping it",
                             exc_info=task.exception())

    setattr(connection, ICE_DATA_RECEIVED, data_received)


def _run_inline(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now; if it has to wait, a task (returned) finishes it from there."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, waiting))


async def _finish(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    await resume(coro, waiting)


SEND_RTP = "_send_rtp"


def wrap_rtp_send(sender: RTCRtpSender, before: Callable[[bytes], None]) -> None:
    """Call ``before(data)`` with every RTP or RTCP packet (unencrypted) the transport of
    ``sender`` sends, as it leaves (used to time audio as it leaves a test's peer, after
    its encoder's buffering). The sender must have its transport (after the offer)."""
    transport = sender.transport
    send: Callable[[bytes], Awaitable[None]] = _require(transport, SEND_RTP,
                                                        "RTCDtlsTransport")

    async def record(data: bytes) -> None:
        before(data)
        await send(data)

    setattr(transport, SEND_RTP, record)


# ------------------------------------------------------------ RTP sending

#: The ICE connection's selected (nominated) candidate pair, by component.
ICE_NOMINATED = "_nominated"
#: RTCDtlsTransport's SRTP session for what it sends, and its sent-traffic counters.
DTLS_TX_SRTP = "_tx_srtp"
DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
#: What RTCDtlsTransport._send_rtp does, all of which the inline send does in its place
#: (checked in its source), and how aioice's protocol sends a datagram.
_DTLS_SEND_STEPS = ("if self._state != State.CONNECTED:",
                    "data = self._tx_srtp.protect_rtcp(data)",
                    "data = self._tx_srtp.protect(data)",
                    "await self.transport._send(data)",
                    "self.__tx_bytes += len(data)", "self.__tx_packets += 1")
_ICE_SEND_STEPS = ("active_pair = self._nominated.get(component)",
                   "await active_pair.protocol.send_data(data, active_pair.remote_addr)")
_PROTOCOL_SEND_STEP = "self.transport.sendto(data, addr)"


@dataclass
class InlineSend:
    """What the inline send path of one peer connection did."""

    #: RTP and RTCP packets sent without aiortc's coroutine layers.
    packets: int = 0


class _Done:
    """An awaitable that is already done: awaiting it neither yields nor allocates."""

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_DONE = _Done()


def send_rtp_inline(pc: RTCPeerConnection) -> InlineSend | None:
    """Send the peer connection's RTP and RTCP without three coroutine layers per packet.

    aiortc's sender awaits ``RTCDtlsTransport._send_rtp`` (SRTP protect, counters), which
    awaits aioice's ``Connection.send`` → ``sendto`` → ``StunProtocol.send_data``, which
    at last calls the UDP transport's ``sendto``: none of them ever waits. This replaces
    the DTLS transport's ``_send_rtp`` with a plain function doing the same steps at once
    (same state check and ``ConnectionError``, same SRTP session, same counters, the
    selected pair's own transport) and returning an already-done awaitable, so the
    packets and everything the sender counts for its RTCP reports stay as they were.

    Call it once the answer is made. Returns None, changing nothing, when this
    aiortc/aioice lacks what it needs.
    """
    transports = _with_connections(t.sender.transport for t in pc.getTransceivers())
    if (not transports or _inline_send_missing()
            or not all(_send_capable(dtls, conn) for dtls, conn in transports)):
        logger.warning("this aiortc/aioice cannot send RTP inline; using its coroutines")
        return None
    counters = InlineSend()
    for dtls, connection in transports:
        setattr(dtls, SEND_RTP, _inline_sender(dtls, connection, counters))
    return counters


def _send_capable(dtls: RTCDtlsTransport, connection: Any) -> bool:
    return (connection is not None and hasattr(connection, ICE_NOMINATED)
            and _dtls_connected_state() is not None
            and all(hasattr(dtls, name) for name in (SEND_RTP, DTLS_TX_SRTP, DTLS_STATE,
                                                     DTLS_TX_BYTES, DTLS_TX_PACKETS)))


def _inline_sender(dtls: RTCDtlsTransport, connection: Any,
                   counters: InlineSend) -> Callable[[bytes], Awaitable[None]]:
    connected = _dtls_connected_state()
    nominated: dict[int, Any] = getattr(connection, ICE_NOMINATED)

    def send_rtp(data: bytes) -> Awaitable[None]:
        if getattr(dtls, DTLS_STATE) != connected:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        srtp = getattr(dtls, DTLS_TX_SRTP)
        data = srtp.protect_rtcp(data) if is_rtcp(data) else srtp.protect(data)
        pair = nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        pair.protocol.transport.sendto(data, pair.remote_addr)
        setattr(dtls, DTLS_TX_BYTES, getattr(dtls, DTLS_TX_BYTES) + len(data))
        setattr(dtls, DTLS_TX_PACKETS, getattr(dtls, DTLS_TX_PACKETS) + 1)
        counters.packets += 1
        return _DONE

    return send_rtp


def _inline_send_missing() -> list[str]:
    """The steps of aiortc's/aioice's send path, as the inline send repeats them, that
    their installed source no longer has."""
    sources = (("RTCDtlsTransport._send_rtp", "_send_rtp", _DTLS_SEND_STEPS),
               ("aioice.Connection.sendto", "sendto", _ICE_SEND_STEPS),
               ("aioice.ice.StunProtocol.send_data", "send_data", (_PROTOCOL_SEND_STEP,)))
    owners = {"_send_rtp": RTCDtlsTransport, "sendto": aioice.ice.Connection,
              "send_data": getattr(aioice.ice, "StunProtocol", None)}
    missing = []
    for owner, name, steps in sources:
        try:
            source = inspect.getsource(getattr(owners[name], name))
        except (OSError, TypeError, AttributeError):
            source = ""
        missing += [f"{owner}: {step}" for step in steps if step not in source]
    return missing


# ------------------------------------------------------------ paced RTP sending

#: RTCRtpSender's coroutine that sends its track (started by its ``send()``), and the
#: fields that loop keeps (name-mangled): started/exited events, its track, the MID and
#: header extension ids it stamps, and what its RTCP sender reports are made of.
SENDER_RUN_RTP = "_run_rtp"
SENDER_RTP_STARTED = "_RTCRtpSender__rtp_started"
SENDER_RTP_EXITED = "_RTCRtpSender__rtp_exited"
SENDER_TRACK = "_RTCRtpSender__track"
SENDER_MID = "_RTCRtpSender__mid"
SENDER_EXTENSIONS = "_RTCRtpSender__rtp_header_extensions_map"
SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
SENDER_OCTETS = "_RTCRtpSender__octet_count"
SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_FIELDS = (SENDER_RTP_STARTED, SENDER_RTP_EXITED, SENDER_TRACK, SENDER_MID,
                  SENDER_EXTENSIONS, SENDER_NTP_TIMESTAMP, SENDER_RTP_TIMESTAMP,
                  SENDER_OCTETS, SENDER_PACKETS, "_ssrc", "_enabled")
#: What RTCRtpSender._run_rtp does for a pre-encoded audio packet, all of which the paced
#: sender does in its place (checked in its source).
_SENDER_RTP_STEPS = (
    "self.__rtp_started.set()", "sequence_number = random_sequence_number()",
    "timestamp_origin = random32()", "enc_frame = await self._next_encoded_frame(codec)",
    "timestamp = uint32_add(timestamp_origin, enc_frame.timestamp)",
    "packet.ssrc = self._ssrc",
    "packet.marker = (i == len(enc_frame.payloads) - 1) and 1 or 0",
    "clock.current_ntp_time() >> 14", "packet.extensions.mid = self.__mid",
    "packet_bytes = packet.serialize(self.__rtp_header_extensions_map)",
    "await self.transport._send_rtp(packet_bytes)",
    "self.__ntp_timestamp = clock.current_ntp_time()",
    "self.__rtp_timestamp = packet.timestamp", "self.__octet_count += len(payload)",
    "self.__packet_count += 1", "sequence_number = uint16_add(sequence_number, 1)",
    "self.__track.stop()", "self.__rtp_exited.set()")
#: What RTCRtpSender._next_encoded_frame does with a pre-encoded packet.
_SENDER_FRAME_STEPS = ("data = await self.__track.recv()", "if not self._enabled:",
                       "payloads, timestamp = self.__encoder.pack(data)")
#: Seconds between the NTP epoch (1900) and the Unix epoch (1970).
_NTP_UNIX_OFFSET = 2208988800


class PacedSource(Protocol):
    """A track the paced sender can drive (:class:`~relay.webrtc.tracks.PlayoutTrack`)."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 (aiortc's name)
    @property
    def encodes_opus(self) -> bool: ...
    def due(self, now: float) -> float: ...
    def take_opus(self, now: float) -> tuple[bytes, int]: ...
    def frame_sent(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class PacedRtp:
    """What the paced sender of one track did."""

    #: True once the sender runs paced (False: aiortc's loop sends, e.g. not Opus).
    running: bool = False
    #: RTP packets sent.
    packets: int = 0


def pace_rtp(sender: RTCRtpSender, source: PacedSource) -> PacedRtp | None:
    """Send ``source``'s Opus packets from a timer instead of aiortc's RTP loop.

    aiortc's sender runs a task per track: await ``track.recv()`` (which sleeps until the
    frame is due), wrap the bytes in an ``av.Packet``, unwrap them again (``pack``), build
    an ``RtpPacket`` with header extensions, serialize it, read the NTP clock twice through
    ``datetime``, then await the transport. Once the sender starts, this runs the same
    steps from one timer callback per 20 ms: the packet is the header aiortc would
    serialize (built once by aiortc, then only the sequence number, timestamp and
    abs-send-time change) plus the payload, handed to the DTLS transport's ``_send_rtp``;
    the sender's counters (its RTCP sender reports and stats) and its started/exited
    events are kept as its loop keeps them, and when it stops so does the track. The
    packets kept for retransmission are not: aiortc offers no NACK for audio.

    Call it before the sender starts (when the answer is made). If, when it starts, the
    codec is not Opus or the track does not encode it, aiortc's own loop runs. Returns
    None, changing nothing, when this aiortc lacks what it needs.
    """
    if _paced_send_missing() or not all(hasattr(sender, name) for name in _SENDER_FIELDS):
        logger.warning("this aiortc cannot pace RTP from a timer; using its sender loop")
        return None
    counters = PacedRtp()
    own_loop = getattr(type(sender), SENDER_RUN_RTP)

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        if (codec.mimeType.lower() != "audio/opus" or codec.payloadType is None
                or not source.encodes_opus):
            await own_loop(sender, codec)
            return
        counters.running = True
        await _run_paced(sender, codec, source, counters)

    setattr(sender, SENDER_RUN_RTP, run_rtp)
    return counters


async def _run_paced(sender: RTCRtpSender, codec: RTCRtpCodecParameters,
                     source: PacedSource, counters: PacedRtp) -> None:
    getattr(sender, SENDER_RTP_STARTED).set()
    pacer: _Pacer | None = None
    try:
        pacer = _Pacer(sender, codec, source, counters, asyncio.get_running_loop())
        await pacer.ended
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:
        # Like aiortc's loop: the exited event below must be set, or stop() would hang.
        logger.exception("the paced RTP sender failed")
    finally:
        if pacer is not None:
            pacer.cancel()
        source.stop()
        setattr(sender, SENDER_TRACK, None)
        getattr(sender, SENDER_RTP_EXITED).set()


class _Pacer:
    """One sender's timer: each callback sends the frame that is due and sets the next."""

    def __init__(self, sender: RTCRtpSender, codec: RTCRtpCodecParameters,
                 source: PacedSource, counters: PacedRtp,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._sender = sender
        self._source = source
        self._counters = counters
        self._loop = loop
        self._header, self._abs_at = _rtp_header(sender, codec.payloadType or 0)
        self._sequence = rtcrtpsender.random_sequence_number()
        self._origin = random.getrandbits(32)
        #: Resolves with the exception that ends sending (the track ended, the transport
        #: closed, a failure).
        self.ended: asyncio.Future[None] = loop.create_future()
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = loop.call_soon(self._tick)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        try:
            self._send_due()
            self._timer = self._loop.call_at(self._source.due(self._loop.time()), self._tick)
        except Exception as exc:
            if not self.ended.done():
                self.ended.set_exception(exc)

    def _send_due(self) -> None:
        source, sender = self._source, self._sender
        if source.readyState != "live":
            raise MediaStreamError
        payload, offset = source.take_opus(self._loop.time())
        if sender._enabled:
            header = self._header
            timestamp = (self._origin + offset) & 0xFFFFFFFF
            ntp = _ntp_now()
            pack_into("!HL", header, 2, self._sequence, timestamp)
            if self._abs_at is not None:
                at = self._abs_at
                header[at:at + 3] = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
            sent = getattr(sender.transport, SEND_RTP)(bytes(header) + payload)
            if sent is not _DONE:  # aiortc's own coroutine, or something wrapping it
                _run_inline(cast(Coroutine[Any, Any, None], sent))
            self._sequence = (self._sequence + 1) & 0xFFFF
            setattr(sender, SENDER_NTP_TIMESTAMP, ntp)
            setattr(sender, SENDER_RTP_TIMESTAMP, timestamp)
            setattr(sender, SENDER_OCTETS, getattr(sender, SENDER_OCTETS) + len(payload))
            setattr(sender, SENDER_PACKETS, getattr(sender, SENDER_PACKETS) + 1)
            self._counters.packets += 1
        source.frame_sent()


def _rtp_header(sender: RTCRtpSender, payload_type: int) -> tuple[bytearray, int | None]:
    """The RTP header aiortc's sender would serialize for this sender's audio packets
    (marker set, its SSRC, MID and abs-send-time extensions), and where the 3 bytes of
    abs-send-time sit in it (None: not negotiated)."""

    def serialized(abs_send_time: int) -> bytes:
        packet = RtpPacket(payload_type=payload_type, marker=1, ssrc=sender._ssrc)
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = getattr(sender, SENDER_MID)
        return packet.serialize(getattr(sender, SENDER_EXTENSIONS))

    zero, ones = serialized(0), serialized(0xFFFFFF)
    differ = [index for index, (a, b) in enumerate(zip(zero, ones, strict=True)) if a != b]
    if not differ:
        return bytearray(zero), None
    if differ != list(range(differ[0], differ[0] + 3)):
        raise AiortcInternalsMoved("RtpPacket.serialize", "abs_send_time (3 bytes)")
    return bytearray(zero), differ[0]


def _ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (what ``aiortc.clock.current_ntp_time``
    gives, from ``time.time()`` instead of a ``datetime``)."""
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_UNIX_OFFSET) << 32) | int((now - seconds) * 4294967296.0)


def _paced_send_missing() -> list[str]:
    """The steps of aiortc's RTP sender loop, as the paced sender repeats them, that its
    installed source no longer has."""
    missing = []
    for name, steps in ((SENDER_RUN_RTP, _SENDER_RTP_STEPS),
                        ("_next_encoded_frame", _SENDER_FRAME_STEPS)):
        try:
            source = inspect.getsource(getattr(RTCRtpSender, name))
        except (OSError, TypeError, AttributeError):
            source = ""
        missing += [f"RTCRtpSender.{name}: {step}" for step in steps if step not in source]
    if not callable(getattr(rtcrtpsender, "random_sequence_number", None)):
        missing.append("aiortc.rtcrtpsender.random_sequence_number")
    return missing


# ------------------------------------------------------------ SCTP messages

#: RTCSctpTransport's factory of its per-stream reassembly (called for each DATA chunk).
GET_INBOUND_STREAM = "_get_inbound_stream"
#: Its table of those, by stream id.
INBOUND_STREAMS = "_inbound_streams"


def bound_inbound_messages(pc: RTCPeerConnection, max_bytes: int) -> None:
    """Make ``pc``'s SCTP transport reassemble no data-channel message over ``max_bytes``.

    aiortc reassembles a message of any size, whatever ``a=max-message-size`` it
    advertised, and rescans the whole reassembly list for each fragment: a 10 MB message
    cost the relay 8.5 s of CPU over 20 s (loop lags up to 92 ms for every other call).
    Here the fragments of a message over the limit are dropped as they come; in its place
    the channel gets a blank message of just over ``max_bytes`` (the size rule then
    answers ``message_too_large``), and the call goes on.
    """
    sctp = pc.sctp
    if sctp is None:
        return
    _require(sctp, GET_INBOUND_STREAM, "RTCSctpTransport")
    # The transport's own table: it prunes and resets the streams it holds there.
    streams: dict[int, InboundStream] = _require(sctp, INBOUND_STREAMS, "RTCSctpTransport")

    def get_inbound_stream(stream_id: int) -> InboundStream:
        stream = streams.get(stream_id)
        if stream is None:
            stream = streams[stream_id] = BoundedInboundStream(max_bytes)
        return stream

    setattr(sctp, GET_INBOUND_STREAM, get_inbound_stream)


class BoundedInboundStream(InboundStream):
    """aiortc's per-stream reassembly, holding at most ``max_bytes`` of one message."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        #: Bytes held of each ordered message (by stream sequence number) and of the
        #: unordered one in progress (key -1).
        self._held: dict[int, int] = {}
        #: The message being dropped (its key), and the stand-in owed for it, if any.
        self._dropping: int | None = None
        self._stand_in: tuple[int, int, int, bytes] | None = None
        #: Messages dropped so far.
        self.dropped = 0

    def add_chunk(self, chunk: Any) -> None:
        """Hold ``chunk`` for reassembly, unless its message is over the limit."""
        key = -1 if chunk.flags & SCTP_DATA_UNORDERED else chunk.stream_seq
        owed = self._stand_in is not None and key == self._stand_in[0]
        if key == self._dropping or owed or (key != -1
                                              and _seq_before(key, self.sequence_number)):
            # A fragment of the message being dropped, or a late one of a message already
            # dropped or delivered (held, it would block the stream for good).
            self._drop(chunk, key)
            return
        held = self._held.get(key, 0) + len(chunk.user_data)
        if held <= self.max_bytes:
            self._held[key] = held
            super().add_chunk(chunk)
            if chunk.flags & SCTP_DATA_LAST_FRAG and key == -1:
                self._held.pop(-1, None)
            return
        # Over the limit: what is held of it goes, and so will the rest of it.
        self._dropping = key
        self.dropped += 1
        ordered = key != -1
        self.reassembly = [c for c in self.reassembly
                           if bool(c.flags & SCTP_DATA_UNORDERED) == ordered
                           or (ordered and c.stream_seq != key)]
        if ordered:
            # The transport gives its receive window back per message delivered: the
            # stand-in is as long as what was held of it (and it is over the limit).
            self._stand_in = (key, chunk.stream_id, chunk.protocol, b" " * held)
        self._held.pop(key, None)
        self._drop(chunk, key)

    def _drop(self, chunk: Any, key: int) -> None:
        chunk.user_data = b""  # nothing held, so the window is not charged for it
        if chunk.flags & SCTP_DATA_LAST_FRAG:
            self._dropping = None

    def _stand_in_due(self) -> bool:
        """Whether the dropped message's stand-in is next: its last fragment has come and
        every message before it was delivered."""
        stand_in = self._stand_in
        return (stand_in is not None and self._dropping != stand_in[0]
                and stand_in[0] == self.sequence_number)

    def pop_messages(self) -> Iterator[tuple[int, int, bytes]]:
        """aiortc's reassembled messages, with the stand-in of a dropped one in its place
        in the stream's order."""
        while True:
            stand_in = self._stand_in
            if stand_in is not None and self._stand_in_due():
                self._stand_in = None
                self.sequence_number = (self.sequence_number + 1) % 65536
                yield stand_in[1:]
            yield from super().pop_messages()
            # Delivering the messages before it may have made the stand-in due.
            if not self._stand_in_due():
                break
        for key in [k for k in self._held if k != -1 and _seq_before(k, self.sequence_number)]:
            del self._held[key]


def _sctp_reassembly_missing() -> list[str]:
    """What :func:`bound_inbound_messages` needs of aiortc's SCTP transport and its
    per-stream reassembly, and the installed aiortc lacks."""
    from aiortc.rtcsctptransport import RTCSctpTransport

    stream = InboundStream()
    needs = [("RTCSctpTransport", RTCSctpTransport, GET_INBOUND_STREAM),
             ("InboundStream", stream, "reassembly"),
             ("InboundStream", stream, "sequence_number"),
             ("InboundStream", stream, "add_chunk"),
             ("InboundStream", stream, "pop_messages")]
    return [f"{owner}.{attribute}" for owner, obj, attribute in needs
            if not hasattr(obj, attribute)]


def _seq_before(a: int, b: int) -> bool:
    """Whether stream sequence number ``a`` comes before ``b`` (serial arithmetic)."""
    return a != b and (b - a) % 65536 < 32768


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
            "RTCDtlsTransport": receiver.transport,
        }
        if connection is not None:
            owners["aioice.ice.StunProtocol()"] = aioice.ice.StunProtocol(connection)
        for owner, attribute in _INSTANCE_ATTRIBUTES:
            if not hasattr(owners.get(owner), attribute):
                missing.append(f"{owner}.{attribute}")
        modules = {"aioice.ice": aioice.ice,
                   "aioice.ice.StunProtocol": getattr(aioice.ice, "StunProtocol", None)}
        for owner, attribute in _AIOICE_ATTRIBUTES:
            if not hasattr(modules[owner], attribute):
                missing.append(f"{owner}.{attribute}")
        if not _sets_depayloaded(receiver):
            missing.append(f"RtpPacket.{RTP_DEPAYLOADED}")
        missing += [f"RTCDtlsTransport._recv_next: {step}"
                    for step in _dtls_srtp_steps_missing()]
        if _dtls_connected_state() is None:
            missing.append("aiortc.rtcdtlstransport.State.CONNECTED")
        missing += _sctp_reassembly_missing()
        missing += [f"{owner}.{attribute}" for owner, attribute in _SEND_ATTRIBUTES
                    if not hasattr(owners.get(owner), attribute)]
        missing += _inline_send_missing()
        missing += _paced_send_missing()
        sender = transceiver.sender
        missing += [f"RTCRtpSender.{name}" for name in _SENDER_FIELDS
                    if not hasattr(sender, name)]
    finally:
        await pc.close()
    return missing


def _sets_depayloaded(receiver: RTCRtpReceiver) -> bool:
    # The attribute exists only once the receiver has set it on a packet: read the
    # handler's source for the assignment instead.
    handler = getattr(type(receiver), HANDLE_RTP, None)
    try:
        source = inspect.getsource(handler) if handler is not None else ""
    except (OSError, TypeError):
        return False
    return f"packet.{RTP_DEPAYLOADED} =" in source


def _dtls_srtp_steps_missing() -> list[str]:
    # The inline path repeats what the transport's reader does with an SRTP packet: if
    # that changes, the inline path must be looked at again.
    try:
        source = inspect.getsource(RTCDtlsTransport._recv_next)
    except (OSError, TypeError, AttributeError):
        return list(_DTLS_SRTP_STEPS)
    return [step for step in _DTLS_SRTP_STEPS if step not in source]


def _require(obj: Any, attribute: str, owner: str) -> Any:
    try:
        return getattr(obj, attribute)
    except AttributeError:
        raise AiortcInternalsMoved(owner, attribute) from None
