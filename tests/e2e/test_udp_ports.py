"""UDP ports an operator chooses: a range (exhausted: 503 at once), or one shared port that
carries many calls at the same time."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from relay.client import CallClient, CallCreationFailed, PcmSource
from relay.server.app import REGISTRY

from ..conftest import base_url
from .test_call_e2e import FAST_VAD, rms


def free_ports(count: int, start: int = 21000) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1 (below the range the
    OS hands out on its own, so clients' sockets cannot take them meanwhile)."""
    for first in range(start, start + 5000, count):
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no free ports")


def candidate_ports(sdp: str) -> list[int]:
    return [int(m) for m in re.findall(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ",
                                       sdp, flags=re.M)]


async def answered(client: CallClient) -> str:
    description = client.pc.remoteDescription
    assert description is not None
    return str(description.sdp)


async def test_udp_ports_range_confines_calls_and_refuses_when_full(relay_factory,
                                                                    make_client) -> None:
    first = free_ports(2)
    relay = await relay_factory(udp_ports=(first, first + 1))
    calls = [make_client(server=relay) for _ in range(2)]
    for client in calls:
        await client.connect()
        await client.wait_for("session.created")
    # (A bundled answer lists its one candidate under each media section.)
    ports = [set(candidate_ports(await answered(client))) for client in calls]
    assert ports == [{first}, {first + 1}], ports
    # The range is full: the next call is refused at once, 503, not left to hang.
    started = time.monotonic()
    with pytest.raises(CallCreationFailed) as refused:
        await make_client(server=relay).connect()
    assert refused.value.status == 503 and refused.value.code == "udp_ports_exhausted"
    assert time.monotonic() - started < 5
    assert len(relay.app[REGISTRY]) == 2
    # A call ends: its port is free for the next.
    assert await calls[0].hangup() == 200
    again = make_client(server=relay)
    await again.connect()
    await again.wait_for("session.created")
    assert set(candidate_ports(await answered(again))) == ports[0]


async def test_udp_ports_single_port_carries_ten_calls_at_once(relay_factory, make_client,
                                                               speech) -> None:
    port = free_ports(1)
    relay = await relay_factory(udp_ports=(port, port), default_session=FAST_VAD)
    clients = [make_client(speech, server=relay) for _ in range(10)]
    await asyncio.gather(*(client.connect(timeout=30) for client in clients))
    for client in clients:
        found = candidate_ports(await answered(client))
        assert found and set(found) == {port}, found
    shared = relay.app[REGISTRY].ports
    assert shared is not None and shared.stats()["127.0.0.1"]["connections"] == 10
    # Every call completes a spoken turn: the model heard it, and the reply came back.
    await asyncio.gather(*(client.wait_for("output_audio_buffer.stopped", timeout=90)
                           for client in clients))
    await asyncio.sleep(0.3)
    for client in clients:
        reply = bytes(client.received)
        voiced = sum(1 for i in range(0, len(reply), 960) if rms(reply[i:i + 960]) > 300)
        assert voiced * 0.02 > 1.0, voiced
    assert all(await asyncio.gather(*(client.hangup() for client in clients)))
    await asyncio.sleep(0.2)
    assert shared.stats()["127.0.0.1"]["connections"] == 0


async def test_udp_ports_single_port_refuses_an_unbundled_offer(relay_factory) -> None:
    port = free_ports(1)
    relay = await relay_factory(udp_ports=(port, port))

    def unbundle(sdp: str) -> str:
        return "\r\n".join(line for line in sdp.split("\r\n")
                           if not line.startswith("a=group:BUNDLE"))

    client = CallClient(base_url(relay), PcmSource(), ice_addresses=("127.0.0.1",),
                        edit_offer=unbundle)
    try:
        with pytest.raises(CallCreationFailed) as refused:
            await client.connect()
    finally:
        await client.close()
    assert refused.value.status == 400 and "BUNDLE" in refused.value.server_message
    assert len(relay.app[REGISTRY]) == 0


async def test_udp_ports_single_port_in_use_fails_at_startup(relay_factory) -> None:
    port = free_ports(1)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", port))
    try:
        with pytest.raises(OSError):
            await relay_factory(udp_ports=(port, port))
    finally:
        taken.close()
