"""The call driver against an in-memory upstream connector: no upstream socket at all.

The driver answers a real aiortc offer (its ICE is pinned to loopback and never checked:
the offering peer never applies the answer), so what is tested here is the driver's own
wiring: what it asks the connector for, what it sends upstream, and how it releases
everything when either side ends.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiortc import RTCPeerConnection

from relay.config import Settings
from relay.errors import InvalidRequest, UpstreamError
from relay.protocol.call_protocol import CLIENT
from relay.protocol.events import b64
from relay.server.call_driver import CallDriver
from relay.upstream.client import UpstreamSocket

from ..support.upstream import FakeConnector, FakeSocket

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


async def test_driver_reopens_an_upstream_that_failed_and_restores_the_session() -> None:
    connector = FakeConnector()
    closed: list[CallDriver] = []
    call = driver(connector, closed)
    client, offer = await client_offer()
    try:
        await call.start(offer)
        first = connector.sockets[0]
        first.push({"type": "session.updated",
                    "session": {"type": "realtime", "instructions": "be brief"}})
        first.push({"type": "conversation.item.done", "item": {
            "id": "u1", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "remember me"}]}})
        await asyncio.sleep(0.1)
        first.hang_up(1011, "internal error")
        for _ in range(100):
            if len(connector.sockets) == 2 and len(connector.sockets[1].sent) >= 2:
                break
            await asyncio.sleep(0.02)
        update, create = connector.sockets[1].sent[:2]
        assert update["type"] == "session.update"
        assert update["session"]["instructions"] == "be brief"  # type: ignore[index]
        assert create["type"] == "conversation.item.create"
        assert create["item"]["id"] == "u1"  # type: ignore[index]
        assert not call.closing and closed == []
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


#: 20 ms of 24 kHz PCM16, one uplink chunk.
CHUNK_BYTES = 960


def chunk(n: int) -> bytes:
    return bytes([n % 256]) * CHUNK_BYTES


def appended(socket: FakeSocket) -> list[str]:
    return [str(e["audio"]) for e in socket.sent if e["type"] == "input_audio_buffer.append"]


class DrainingSocket(FakeSocket):
    """A session whose sends wait while ``gate`` is closed (a buffer waiting to drain)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, message: str) -> None:
        await self.gate.wait()
        await super().send(message)


class GatedConnector(FakeConnector):
    """Hands out :class:`DrainingSocket` sessions; each after the first opens only once
    ``reopen`` is set."""

    def __init__(self) -> None:
        super().__init__(socket_type=DrainingSocket)
        self.reopen = asyncio.Event()

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        if self.sockets:
            await self.reopen.wait()
        return await super().connect(model, intent=intent)


async def started(connector: FakeConnector) -> tuple[CallDriver, RTCPeerConnection]:
    call = driver(connector)
    client, offer = await client_offer()
    await call.start(offer)
    await asyncio.wait_for(connector.sockets[0].sent_event.wait(), 5)
    return call, client


async def test_driver_writes_the_uplink_in_its_callback() -> None:
    connector = FakeConnector()
    call, client = await started(connector)
    try:
        socket = connector.sockets[0]
        call._send_uplink([chunk(1)])
        # Written before the callback returned: no task had to wake for it.
        assert appended(socket) == [b64(chunk(1))]
    finally:
        await call.close()
        await client.close()


async def test_driver_upstream_writes_that_wait_keep_their_order() -> None:
    connector = GatedConnector()
    call, client = await started(connector)
    try:
        socket = connector.sockets[0]
        assert isinstance(socket, DrainingSocket)
        socket.gate.clear()
        for n in range(10):
            call._send_uplink([chunk(n)])
            await asyncio.sleep(0)
        assert appended(socket) == []
        socket.gate.set()
        for n in range(10, 15):
            call._send_uplink([chunk(n)])
        for _ in range(100):
            if len(appended(socket)) >= 15:
                break
            await asyncio.sleep(0.01)
        # Each once, in order.
        assert appended(socket) == [b64(chunk(n)) for n in range(15)]
        call._send_uplink([chunk(15)])
        assert appended(socket)[-1] == b64(chunk(15))
    finally:
        await call.close()
        await client.close()


async def test_driver_events_queued_while_the_upstream_reopens_follow_the_restore() -> None:
    connector = GatedConnector()
    call, client = await started(connector)
    try:
        first = connector.sockets[0]
        first.push({"type": "session.updated",
                    "session": {"type": "realtime", "instructions": "be brief"}})
        await asyncio.sleep(0.05)
        first.hang_up(1011, "internal error")
        for _ in range(100):
            if call.core.upstream_down:
                break
            await asyncio.sleep(0.01)
        assert call.core.upstream_down
        sent_before = len(first.sent)
        call._client_message(json.dumps({"type": "conversation.item.create", "item": {
            "id": "late", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "still there?"}]}}), CLIENT)
        call._send_uplink([chunk(1)])  # stale by the restore: dropped
        await asyncio.sleep(0.05)
        assert len(first.sent) == sent_before and len(connector.sockets) == 1
        connector.reopen.set()
        for _ in range(100):
            if len(connector.sockets) == 2 and len(connector.sockets[1].sent) >= 2:
                break
            await asyncio.sleep(0.01)
        second = connector.sockets[1]
        assert [e["type"] for e in second.sent] == ["session.update",
                                                    "conversation.item.create"]
        assert second.sent[1]["item"]["id"] == "late"  # type: ignore[index]
        assert len(first.sent) == sent_before
    finally:
        await call.close()
        await client.close()


class BrokenSocket(FakeSocket):
    """A session whose send fails (as a bug of the relay's would) for audio."""

    async def send(self, message: str) -> None:
        if "input_audio_buffer.append" in message:
            raise RuntimeError("a bug in the writer")
        await super().send(message)


async def test_driver_a_failed_upstream_write_ends_the_call_not_the_callback() -> None:
    connector = FakeConnector(socket_type=BrokenSocket)
    closed: list[CallDriver] = []
    call = driver(connector, closed)
    client, offer = await client_offer()
    try:
        await call.start(offer)
        call._send_uplink([chunk(1)])  # not raised into the RTP datagram's callback
        for _ in range(200):
            if call.closed:
                break
            await asyncio.sleep(0.02)
        assert call.closed and call.close_reason == "internal error"
    finally:
        await call.close()
        await client.close()


async def test_driver_close_cancels_an_upstream_write_in_flight() -> None:
    connector = GatedConnector()
    call, client = await started(connector)
    socket = connector.sockets[0]
    assert isinstance(socket, DrainingSocket)
    socket.gate.clear()
    call._send_uplink([chunk(1)])
    await asyncio.wait_for(call.close(), 5)
    socket.gate.set()
    call._send_uplink([chunk(2)])
    await asyncio.sleep(0.02)
    assert appended(socket) == [] and socket.closed
    await client.close()
