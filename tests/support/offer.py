"""A bare offering peer, for tests that post the SDP offer themselves (raw HTTP, the SDK).

:class:`relay.client.CallClient` posts its own offer; these tests need the offer as
text, the answer applied by hand, and the data channel's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiortc import RTCSessionDescription

from relay.client import PcmSource
from relay.webrtc.peer import EVENTS_LABEL, create_peer, restrict_host_addresses

from ..conftest import LOOPBACK


class OfferPeer:
    """An aiortc peer with a (silent) microphone and the ``oai-events`` channel, on loopback.

    Use it as ``async with OfferPeer() as peer``: it is closed on the way out.
    """

    def __init__(self) -> None:
        self.pc = create_peer(())
        self.pc.addTrack(PcmSource())
        self.channel = self.pc.createDataChannel(EVENTS_LABEL)
        #: Every server event received, in order; :attr:`events` queues them for reading.
        self.received: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.channel.on("message", self._on_message)

    async def __aenter__(self) -> OfferPeer:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.received.append(event)
        self.events.put_nowait(event)

    async def offer(self) -> str:
        """A real SDP offer (audio and a data channel), with host candidates on loopback."""
        offer = await self.pc.createOffer()
        restrict_host_addresses(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(offer)
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def accept(self, answer: str, timeout: float = 15.0) -> None:
        """Apply the server's SDP answer and wait for the data channel to open."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        if self.channel.readyState == "open":
            opened.set()
        await asyncio.wait_for(opened.wait(), timeout)

    async def next_event(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next server event from the data channel."""
        return await asyncio.wait_for(self.events.get(), timeout)

    async def session_matching(self, predicate: Callable[[dict[str, Any]], bool],
                               timeout: float = 20.0) -> dict[str, Any]:
        """The first session (of ``session.created`` or ``session.updated``) that matches;
        events before it are consumed. (The call's first event, ``session.created``,
        already describes the call's session: tests that need that check it themselves.)
        """
        async def find() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event["type"] in ("session.created", "session.updated"):
                    session: dict[str, Any] = event["session"]
                    if predicate(session):
                        return session
        return await asyncio.wait_for(find(), timeout)
