"""A server-side controller attached to a live call: ``GET /v1/realtime?call_id=…``.

An application server (a tool runner, a guardrail, a logger, an Agents SDK session)
joins a call's session over a WebSocket, as on the hosted service: it gets the call's
server events (no audio deltas, no greeting) and may send any client event, which goes
through the call's protocol core like the client's own. Several may attach at once.

A sideband never slows its call: events wait in a bounded outbox, and a sideband that
falls ``RELAY_SIDEBAND_MAX_EVENTS`` events behind is closed (1013, "sideband too slow")
while the call goes on. A sideband closing never ends the call; the call ending closes
its sidebands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from ..logs import CallLog
from ..protocol.events import Event, dumps

logger = logging.getLogger(__name__)

#: Largest message a sideband may send (a session.update with many tools fits easily).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class Sideband:
    """One sideband WebSocket of a call: its outbox, its writer, its reader."""

    def __init__(self, name: str, ws: web.WebSocketResponse, *, call_id: str,
                 max_outbox: int) -> None:
        self.name = name
        self.call_id = call_id
        self.log = CallLog(logger, call_id)
        self._ws = ws
        self._outbox: asyncio.Queue[str] = asyncio.Queue(max_outbox)
        self._closing = False
        #: Why the relay closed it, if it did ("sideband too slow").
        self.closed_by_relay: str | None = None

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the writer."""
        return self._outbox.qsize()

    def offer(self, events: list[Event]) -> None:
        """Queue ``events`` to send; close the sideband if it has fallen too far behind."""
        if self._closing:
            return
        for event in events:
            try:
                self._outbox.put_nowait(dumps(event))
            except asyncio.QueueFull:
                self.log.warning("%s fell %d events behind; closing it",
                                 self.name, self._outbox.maxsize)
                self.closed_by_relay = "sideband too slow"
                self.close_soon(WSCloseCode.TRY_AGAIN_LATER, self.closed_by_relay)
                return

    async def run(self, on_message: Callable[[str | bytes], None]) -> None:
        """Send what is queued and hand every message received to ``on_message``, until
        either side closes."""
        writer = asyncio.get_running_loop().create_task(self._write(),
                                                        name=f"{self.call_id}:{self.name}")
        try:
            async for message in self._ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    on_message(message.data)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await self.close(WSCloseCode.OK, "")

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (the call's event path); the reader then ends."""
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().create_task(self._ws.close(code=code,
                                                                  message=reason.encode()))

    async def close(self, code: int, reason: str) -> None:
        """Close the WebSocket with ``code`` and ``reason``; safe to call twice."""
        self._closing = True
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, message=reason.encode())

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            await self._ws.send_str(text)
