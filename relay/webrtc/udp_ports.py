"""The UDP ports calls' ICE sockets use: any, a range the operator chose, or one port.

aioice binds every call's host socket to a port the OS picks, which a firewall, a NAT
rule or a container's published ports cannot follow. With ``--udp-ports LO-HI`` each
call's host sockets are bound inside the range (the next free port after the last one
handed out, so a port just freed is not reused at once); when none is free the call is
refused with 503 at once. With ``--udp-ports PORT`` every call shares one socket per
address on that port, demultiplexed by ICE username fragment and then by remote address
(:class:`relay.webrtc.internals.SharedPort`), as the hosted service and LiveKit do.

With ``--workers N`` each worker process has sockets of its own (relay/cluster/): a range
is cut into N disjoint slices, worker ``i`` taking the ``i``-th (:func:`worker_udp_ports`),
and one shared ``PORT`` becomes one port per worker, ``PORT + i``.

Only the host candidates' sockets are placed: a TURN allocation's socket is an outgoing
connection to the TURN server, which a stateful firewall lets back in by itself.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterable
from typing import Any

from ..errors import UdpPortsExhausted
from .internals import SharedPort, stun_protocol

logger = logging.getLogger(__name__)

#: Receive buffer of a call's own socket (aioice's choice) and of the shared socket, which
#: takes every call's packets (the kernel caps it at net.core.rmem_max).
CALL_RECEIVE_BUFFER = 256 * 1024
SHARED_RECEIVE_BUFFER = 8 * 1024 * 1024


def parse_udp_ports(text: str) -> tuple[int, int]:
    """``"50000-50100"`` → ``(50000, 50100)``; ``"3478"`` → ``(3478, 3478)``."""
    low, dash, high = text.strip().partition("-")
    first, last = int(low), int(high) if dash else int(low)
    if not 1 <= first <= last <= 65535:
        raise ValueError(text)
    return first, last


#: Fewest ports of a range each worker's slice must have: a slice of one port would switch
#: that worker to the shared-port mode, which a range does not ask for.
MIN_PORTS_PER_WORKER = 2


def workers_udp_problem(ports: tuple[int, int], workers: int) -> str | None:
    """What keeps ``ports`` from being shared by ``workers`` processes, or None."""
    low, high = ports
    if workers <= 1:
        return None
    if low == high:
        if low + workers - 1 > 65535:
            return (f"is one port, {low}, so worker i uses {low} + i: {workers} workers need "
                    f"ports up to {low + workers - 1}, beyond 65535")
        return None
    if high - low + 1 < MIN_PORTS_PER_WORKER * workers:
        return (f"has {high - low + 1} ports: {workers} workers need at least "
                f"{MIN_PORTS_PER_WORKER * workers} ({MIN_PORTS_PER_WORKER} each)")
    return None


def worker_udp_ports(ports: tuple[int, int], index: int, workers: int) -> tuple[int, int]:
    """Worker ``index``'s (0-based) share of ``ports`` among ``workers``: its slice of a
    range (the slices are disjoint and cover it), or ``PORT + index`` for one port."""
    low, high = ports
    if low == high:
        return low + index, low + index
    size = high - low + 1
    return low + index * size // workers, low + (index + 1) * size // workers - 1


class UdpPorts:
    """Opens the host sockets of calls' ICE connections on the configured ports."""

    def __init__(self, ports: tuple[int, int]) -> None:
        self.low, self.high = ports
        self._next = self.low
        self._shared: dict[str, SharedPort] = {}
        self._lock = asyncio.Lock()

    @property
    def single(self) -> bool:
        """True when every call shares one port."""
        return self.low == self.high

    def __repr__(self) -> str:
        return f"UdpPorts({self.low}-{self.high})"

    async def start(self, addresses: Iterable[str]) -> None:
        """Open the shared sockets of ``addresses`` now (single port only), so a port that
        cannot be had fails at startup rather than at the first call."""
        if self.single:
            for address in addresses:
                await self._shared_port(address)

    async def open(self, connection: Any, address: str) -> Any:
        """The aioice protocol of ``connection``'s host socket on ``address``; raises
        :class:`~relay.errors.UdpPortsExhausted` when the range has no free port."""
        if self.single:
            return (await self._shared_port(address)).attach(connection)
        return await self._bind_in_range(connection, address)

    async def close(self) -> None:
        """Close the shared sockets (calls' own sockets close with their calls)."""
        for port in self._shared.values():
            port.close()
        self._shared.clear()

    def stats(self) -> dict[str, Any]:
        """What the shared sockets carry: connections attached, datagrams dropped."""
        return {address: {"connections": len(port), "unroutable": port.unroutable,
                           "unsent": port.unsent}
                for address, port in self._shared.items()}

    async def _bind_in_range(self, connection: Any, address: str) -> Any:
        loop = asyncio.get_running_loop()
        size = self.high - self.low + 1
        for step in range(size):
            port = self.low + (self._next - self.low + step) % size
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: stun_protocol(connection), local_addr=(address, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._next = port + 1
            _receive_buffer(transport, CALL_RECEIVE_BUFFER)
            return protocol
        raise UdpPortsExhausted(
            f"Every UDP port of the relay's range {self.low}-{self.high} on {address} is in "
            "use; try again when a call has ended.")

    async def _shared_port(self, address: str) -> SharedPort:
        async with self._lock:
            port = self._shared.get(address)
            if port is None:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SHARED_RECEIVE_BUFFER)
                    sock.bind((address, self.low))
                except OSError:
                    sock.close()
                    raise
                port = self._shared[address] = SharedPort(sock)
                logger.info("ICE for every call on %s", port.sockname[:2])
            return port


def _receive_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
