"""The call driver against an in-memory upstream connector: no upstream socket at all.

The driver answers a real aiortc offer (its ICE is pinned to loopback and never checked:
the offering peer never applies the answer), so what is tested here is the driver's own
wiring: what it asks the connector for, what it sends upstream, and how it releases
everything when either side ends.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection

from relay.config import Settings
from relay.errors import InvalidRequest, UpstreamError
from relay.server.call_driver import CallDriver

from ..support.upstream import FakeConnector

LOOPBACK = ("127.0.0.1",)


async def client_offer() -> tuple[RTCPeerConnection, str]:
    from relay.webrtc.peer import restrict_host_addresses

    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    offer = await pc.createOffer()
    restrict_host_addresses(pc, LOOPBACK)
    await pc.setLocalDescription(offer)
    return pc, pc.localDescription.sdp


def driver(connector: FakeConnector, closed: list[CallDriver] | None = None) -> CallDriver:
    settings = Settings(ice_addresses=LOOPBACK, ice_servers=())
    session = {"type": "realtime", "instructions": "be brief"}
    return CallDriver("rtc_test", settings, session, connector,
                      on_closed=None if closed is None else closed.append)


async def test_driver_sends_the_session_upstream_first() -> None:
    connector = FakeConnector()
    call = driver(connector)
    client, offer = await client_offer()
    try:
        answer = await call.start(offer)
        assert answer.startswith("v=0") and "a=candidate:" in answer
        socket = connector.sockets[0]
        await asyncio.wait_for(socket.sent_event.wait(), 5)
        first = socket.sent[0]
        assert first["type"] == "session.update"
        session = first["session"]
        assert isinstance(session, dict) and session["instructions"] == "be brief"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    finally:
        await call.close()
        await client.close()
    assert socket.closed and call.closed


async def test_driver_closes_when_the_upstream_does() -> None:
    connector = FakeConnector()
    closed: list[CallDriver] = []
    call = driver(connector, closed)
    client, offer = await client_offer()
    try:
        await call.start(offer)
        connector.sockets[0].hang_up(4000, "bye")
        for _ in range(100):
            if call.closed:
                break
            await asyncio.sleep(0.02)
        assert call.closed and call.close_reason == "upstream closed"
        assert closed == [call]
    finally:
        await call.close()
        await client.close()


async def test_driver_upstream_events_reach_the_core() -> None:
    connector = FakeConnector()
    call = driver(connector)
    client, offer = await client_offer()
    try:
        await call.start(offer)
        socket = connector.sockets[0]
        socket.push({"type": "session.updated",
                     "session": {"type": "realtime", "instructions": "be brief"}})
        for _ in range(100):
            if call.core.session:
                break
            await asyncio.sleep(0.01)
        assert call.core.session["instructions"] == "be brief"
    finally:
        await call.close()
        await client.close()


async def test_driver_close_is_safe_twice_and_from_two_tasks() -> None:
    connector = FakeConnector()
    call = driver(connector)
    client, offer = await client_offer()
    await call.start(offer)
    await asyncio.gather(call.close("a"), call.close("b"))
    await call.close("c")
    assert call.close_reason == "a" and connector.sockets[0].closed
    await client.close()


async def test_driver_upstream_refusal_propagates_and_releases_the_peer() -> None:
    connector = FakeConnector(UpstreamError("refused"))
    call = driver(connector)
    client, offer = await client_offer()
    with pytest.raises(UpstreamError):
        await call.start(offer)
    assert call.closed and call.close_reason == "setup failed"
    assert call.pc.connectionState == "closed"
    await client.close()


async def test_driver_bad_offer_closes_the_upstream_session() -> None:
    connector = FakeConnector()
    call = driver(connector)
    with pytest.raises(InvalidRequest):
        await call.start("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\ngarbage\r\n")
    assert connector.sockets[0].closed and call.closed
