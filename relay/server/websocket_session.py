"""Server-side WebSocket sessions: a client's WebSocket bridged to an upstream session of
its own, for either voice API: ``GET /v1/realtime?model=…`` (no ``call_id``) for the
Realtime API, ``GET /v1/live/sessions`` (GPT-Live's primary WebSocket) upgraded.

This is what ``client.realtime.connect(model=...)`` and ``client.live.connect()`` of
openai-python, or an Agents SDK ``RealtimeRunner`` whose URL names the relay, open: the
hosted API's WebSocket interface, through the relay's auth (server keys, sealed ``ek_``
keys, or, for the Realtime API, the browsers' ``openai-insecure-api-key.<key>``
subprotocol), session policy, limits, metrics and logs. :class:`WebSocketSession` is the
I/O around a protocol core
(:class:`~relay.protocol.websocket_protocol.WebSocketProtocol`: the Realtime API's
:class:`~relay.protocol.realtime.websocket_core.WebSocketSessionCore` or GPT-Live's
:class:`~relay.protocol.live.primary_core.LiveWebSocketCore`): one reader per side, one
writer per side (the upstream's writes inline, in whatever fed the core), all owned and
ended by :meth:`WebSocketSession.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..base.inline import InlineWriter
from ..config import Settings
from ..errors import RelayError
from ..logs import CallLog
from ..protocol.events import dumps
from ..protocol.flood import MessageLimits
from ..protocol.redact import Redactor
from ..protocol.websocket_protocol import WebSocketProtocol
from ..upstream.client import UpstreamClosed, UpstreamConnector, UpstreamSocket

logger = logging.getLogger(__name__)

#: The subprotocol a browser's WebSocket names its key in (it cannot set headers):
#: ``Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<key>``.
KEY_SUBPROTOCOL = "openai-insecure-api-key."
#: The subprotocol the relay answers with, as the hosted API does.
REALTIME_SUBPROTOCOL = "realtime"
#: Largest message a client may send (a second of base64 24 kHz PCM16 is 64 KB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Events queued for a client that reads too slowly before the relay closes it (1013).
MAX_OUTBOX = 10_000


def subprotocol_key(headers: Mapping[str, str]) -> str | None:
    """The key a browser named in ``Sec-WebSocket-Protocol``, as an ``Authorization``
    value, or None."""
    for protocol in headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(KEY_SUBPROTOCOL) and len(protocol) > len(KEY_SUBPROTOCOL):
            return f"Bearer {protocol[len(KEY_SUBPROTOCOL):]}"
    return None


def message_limits(settings: Settings) -> MessageLimits:
    """How large and how many messages a WebSocket session's client may send."""
    return MessageLimits(MAX_MESSAGE_BYTES, settings.sideband_message_rate)


def upstream_redactor(settings: Settings) -> Redactor:
    """What masks, in the upstream's words, the secrets the relay sends it."""
    return Redactor(settings.upstream_secrets())


class WebSocketSession:
    """One client WebSocket bridged to one upstream session, ``core`` speaking its
    protocol."""

    def __init__(self, core: WebSocketProtocol, upstream: UpstreamConnector,
                 ws: web.WebSocketResponse, *, model: str | None = None,
                 on_closed: Callable[[WebSocketSession], None] | None = None) -> None:
        self.id = core.session_id
        self.log = CallLog(logger, core.session_id)
        self.model = model
        self.core = core
        self.close_reason: str | None = None
        self._ws = ws
        self._upstream = upstream
        self._socket: UpstreamSocket | None = None
        self._on_closed = on_closed
        self._outbox: asyncio.Queue[str] = asyncio.Queue(MAX_OUTBOX)
        self._upstream_writer = InlineWriter(self._write_upstream, self._upstream_write_failed,
                                             name=f"{self.id}:upstream-writer")
        #: The upstream refused a message (it closed): nothing more is written to it.
        self._upstream_gone = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def session_type(self) -> str:
        """``"realtime"``, ``"transcription"`` or ``"live"``."""
        return self.core.session_type

    async def run(self) -> None:
        """Connect upstream and bridge the two sockets until either closes (or the client
        floods the session); the client is told why in an ``error`` event."""
        try:
            self._socket = await self._upstream.connect(self.model,
                                                        intent=self.core.upstream_intent)
        except RelayError as exc:
            self.log.warning("upstream refused the session: %s", exc.message)
            self.core.relay_error(exc)
            with contextlib.suppress(Exception):
                for event in self.core.drain_client():
                    await self._ws.send_str(dumps(event))
            await self.close("upstream unavailable")
            return
        # A Live session names its model later, in session.start (its core logs it).
        self.log.info("websocket session opened (%s%s)", self.session_type,
                      f", model {self.model}" if self.model else "")
        self.core.start()
        self._spawn(self._read_upstream(), "upstream-reader")
        self._spawn(self._write_client(), "client-writer")
        self._kick()
        try:
            async for message in self._ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                self.core.client_message(message.data)
                self._kick()
                if self.core.end_reason is not None:
                    await self._end(self.core.end_reason, WSCloseCode.POLICY_VIOLATION)
                    return
        finally:
            await self.close(self.close_reason or "client closed")

    async def close(self, reason: str = "closed") -> None:
        """Release both sockets and every task; safe to call twice. The release runs to
        its end even if the caller is cancelled (aiohttp cancels the handler of a client
        that went away), so no upstream session outlives its client."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        await asyncio.shield(self._release(reason))

    async def _release(self, reason: str) -> None:
        try:
            current = asyncio.current_task()
            tasks = [t for t in self._tasks if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, self._upstream_writer.close(),
                                 return_exceptions=True)
            if self._socket is not None:
                with contextlib.suppress(Exception):
                    await self._socket.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._ws.close(code=WSCloseCode.OK, message=reason.encode()[:120]), 2.0)
        finally:
            self._closed.set()
            counts = self.core.measures.events
            self.log.info("websocket session closed (%s); %d events from the client, "
                          "%d to it", reason,
                          sum(n for (d, _), n in counts.items() if d == "from_client"),
                          sum(n for (d, _), n in counts.items() if d == "to_client"))
            if self._on_closed is not None:
                self._on_closed(self)

    async def end(self, error: RelayError, reason: str) -> None:
        """Tell the client ``error`` (an ``error`` event), then close the session with
        1001 (going away) and ``reason`` (the relay is shutting down)."""
        if not self._closing:
            self.core.relay_error(error)
            self._kick()
        await self._end(reason, WSCloseCode.GOING_AWAY)

    async def _end(self, reason: str, code: int) -> None:
        """Send what is queued (the error saying why), then close with ``code``."""
        await self._drain_outbox()
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, message=reason.encode()[:120])
        await self.close(reason)

    async def _drain_outbox(self) -> None:
        for _ in range(50):
            if self._outbox.empty():
                return
            await asyncio.sleep(0.02)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task %s failed", task.get_name(), exc_info=task.exception())
            self._close_soon("internal error")

    def _close_soon(self, reason: str) -> None:
        if not self._closing:
            asyncio.get_running_loop().create_task(self.close(reason))

    def _kick(self) -> None:
        for event in self.core.drain_client():
            try:
                self._outbox.put_nowait(dumps(event))
            except asyncio.QueueFull:
                self.log.warning("the client fell %d events behind; closing", MAX_OUTBOX)
                self._close_soon("client too slow")
                return
        if self.core.upstream_pending:
            self._upstream_writer.kick()

    async def _read_upstream(self) -> None:
        assert self._socket is not None
        async for message in self._socket:  # ends when the session closes, however
            self.core.upstream_message(message)
            self._kick()
        if self._closing:
            return
        self.core.upstream_closed(self._socket.close_code, self._socket.close_reason or "")
        self._kick()
        task = asyncio.current_task()
        self._tasks.discard(task)  # close() must not cancel the task that calls it
        await self._end("upstream closed", WSCloseCode.GOING_AWAY)

    async def _write_upstream(self) -> None:
        """Send the core's events for the upstream (the session's :class:`InlineWriter`
        runs this, one at a time)."""
        socket = self._socket
        if socket is None or self._upstream_gone:
            return
        try:
            for event in self.core.drain_upstream():
                await socket.send(dumps(event))
        except UpstreamClosed:
            # The reader tells the client and ends the session; what the core queues
            # from now on stays there.
            self._upstream_gone = True

    def _upstream_write_failed(self, exc: Exception) -> None:
        # As the writer task's failure was: the relay's bug; never raised into the
        # reader that kicked the writer.
        self.log.error("task %s:upstream-writer failed", self.id, exc_info=exc)
        self._close_soon("internal error")

    async def _write_client(self) -> None:
        while True:
            text = await self._outbox.get()
            await self._ws.send_str(text)


class WebSocketSessions:
    """The live WebSocket sessions of one app (they count toward ``RELAY_MAX_CALLS``)."""

    def __init__(self) -> None:
        self._sessions: set[WebSocketSession] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[WebSocketSession]:
        return iter(list(self._sessions))

    def add(self, session: WebSocketSession) -> None:
        """Track ``session`` until it closes."""
        self._sessions.add(session)
        self._empty.clear()

    def discard(self, session: WebSocketSession) -> None:
        """Forget ``session`` (it closed)."""
        self._sessions.discard(session)
        if not self._sessions:
            self._empty.set()

    async def wait_empty(self) -> None:
        """Wait until no session is live."""
        await self._empty.wait()

    async def close_all(self, reason: str = "relay shutting down") -> None:
        """Close every session (the app is stopping)."""
        await asyncio.gather(*(s.close(reason) for s in list(self._sessions)),
                             return_exceptions=True)
