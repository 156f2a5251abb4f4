"""Connecting to an upstream Realtime WebSocket (GA protocol).

A call driver never opens a socket itself: it is handed an :class:`UpstreamConnector`
(the way httpx is handed a transport) and asks it for an :class:`UpstreamSocket` per call.
:class:`WebSocketConnector` is the real one; tests hand the driver an in-memory one, and
later connectors may route or authenticate differently without the driver changing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from ..errors import UpstreamError

logger = logging.getLogger(__name__)

#: Audio deltas and long session objects can be large; the default 1 MiB is not enough.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

#: Seconds between keepalive pings; a ping unanswered for half of it closes the socket.
PING_INTERVAL = 20.0

#: Close codes of a WebSocket that closed without a close frame (1006), and of a close
#: frame that named no code (1005, which aiohttp reports as 0).
ABNORMAL_CLOSURE = 1006
NO_STATUS_RECEIVED = 1005


class UpstreamClosed(ConnectionError):
    """A message was sent on an upstream session that has closed (the reader finds out
    why: :attr:`UpstreamSocket.close_code`)."""


class UpstreamSocket(Protocol):
    """One call's upstream Realtime session: messages in, messages out, a close."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Every message the upstream sends. Iteration ends when the session closes,
        cleanly or not (:attr:`close_code` tells which)."""
        ...

    async def send(self, message: str) -> None:
        """Send one client event (JSON text); :class:`UpstreamClosed` once closed."""

    async def close(self) -> None:
        """Close the session; safe to call twice."""

    @property
    def close_code(self) -> int | None:
        """The close code once closed (None before, or when none was received)."""

    @property
    def close_reason(self) -> str | None:
        """The close reason once closed."""


class UpstreamConnector(Protocol):
    """Opens an upstream Realtime session for a call."""

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        """A new session on ``model`` (None: the connector's default), or with ``intent``
        (``"transcription"``: a transcription session, which names no model); raises
        :class:`~relay.errors.UpstreamError` when it cannot be opened."""
        ...


class WebSocketConnector:
    """Opens real Realtime WebSockets at ``url`` with ``headers`` (the key among them)."""

    def __init__(self, url: str, headers: Mapping[str, str], *, model: str | None = None,
                 timeout: float = 10.0) -> None:
        self.url = url
        self._headers = dict(headers)
        #: The model asked for when the call names none.
        self.model = model
        self.timeout = timeout

    def __repr__(self) -> str:
        # Never the headers: they carry the key.
        return f"WebSocketConnector({self.url!r}, model={self.model!r})"

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        """Open a session, on ``model`` or the default one; with ``intent`` (the hosted
        API opens transcription sessions at ``?intent=transcription``) and no model."""
        url = with_intent(self.url, intent) if intent else with_model(self.url,
                                                                       model or self.model)
        socket: UpstreamSocket = await connect_upstream(url, self._headers,
                                                        timeout=self.timeout)
        return socket


def with_intent(url: str, intent: str) -> str:
    """``url`` asking for a session of ``intent``: its ``model`` parameter replaced by
    ``intent`` (``wss://api.openai.com/v1/realtime?intent=transcription``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("model", "intent")]
    query.append(("intent", intent))
    return urlunsplit(parts._replace(query=urlencode(query)))


class LiveConnector(WebSocketConnector):
    """Opens primary GPT-Live WebSockets: the model is named in ``session.start``, never
    in the URL (the hosted service takes no query parameters there)."""

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        """Open a session; ``model`` is the protocol core's to send, not the URL's (and a
        Live session has no ``intent``)."""
        socket: UpstreamSocket = await connect_upstream(self.url, self._headers,
                                                        timeout=self.timeout)
        return socket


def with_model(url: str, model: str | None) -> str:
    """``url`` with its ``model`` query parameter set to ``model`` (kept when None)."""
    if not model:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "model"]
    query.append(("model", model))
    return urlunsplit(parts._replace(query=urlencode(query)))


class UpstreamWebSocket:
    """An :class:`UpstreamSocket` over an aiohttp client WebSocket, which owns the
    :class:`aiohttp.ClientSession` it was opened with (one per call).

    aiohttp rather than websockets: its frame reader and masking are compiled, which
    halves the CPU each audio message costs on this, the relay's busiest socket.
    """

    def __init__(self, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._closed_here = False

    def __repr__(self) -> str:
        # Never the session's or the request's headers: they carry the key.
        state = "closed" if self._ws.closed else "open"
        return f"<UpstreamWebSocket {state} close_code={self.close_code}>"

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        ws = self._ws
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                yield msg.data
                continue
            if msg.type is aiohttp.WSMsgType.CLOSE:
                # aiohttp has answered it and closed the connection already.
                self._close_code = msg.data or NO_STATUS_RECEIVED
                self._close_reason = msg.extra or ""
            else:  # CLOSING / CLOSED: ours or a dropped connection; ERROR: a bad frame
                self._ended(msg.type)
            if not self._closed_here:
                # Release the session now (unless close() is under way and does): the
                # caller's close() then has nothing left to wait for.
                await self._session.close()
            return

    def _ended(self, kind: aiohttp.WSMsgType) -> None:
        """Note how the connection ended without the upstream's close frame read here.

        aiohttp reports a connection that simply dropped (no close frame) as a normal
        close (1000); it is an abnormal one (1006), a loss worth a new session.
        """
        if self._close_code is not None or self._closed_here:
            return
        dropped = kind is aiohttp.WSMsgType.CLOSED and self._ws.close_code in (None, 1000)
        self._close_code = ABNORMAL_CLOSURE if dropped else self._ws.close_code
        self._close_reason = ""

    async def send(self, message: str) -> None:
        """Send one client event as a text message."""
        if self._ws.closed:
            raise UpstreamClosed("the upstream session has closed")
        try:
            await self._ws.send_str(message)
        except ConnectionResetError as exc:  # aiohttp's: the transport is closing
            raise UpstreamClosed("the upstream session has closed") from exc

    async def close(self) -> None:
        """Close the WebSocket (a normal close) and the session; safe to call twice."""
        if self._session.closed:
            return
        if not self._ws.closed:
            self._closed_here = True
        try:
            await self._ws.close()
        finally:
            await self._session.close()

    @property
    def close_code(self) -> int | None:
        """The close code once closed: the upstream's, or 1006 when its connection
        dropped without one; None while open."""
        if self._close_code is not None:
            return self._close_code
        return self._ws.close_code if self._ws.closed else None

    @property
    def close_reason(self) -> str | None:
        """The upstream's close reason, once it sent one."""
        return self._close_reason


async def connect_upstream(
    url: str, headers: Mapping[str, str], *, timeout: float = 10.0
) -> UpstreamWebSocket:
    """Open the Realtime WebSocket, or raise :class:`UpstreamError`.

    Compression is off: base64 audio barely compresses and deflate would cost CPU on every
    message. The error names no header, and chains none of aiohttp's (their request info
    holds the headers), so no key can leak through it.
    """
    # Proxies from the environment, as websockets (the client before this one) took them.
    session = aiohttp.ClientSession(trust_env=True)
    try:
        async with asyncio.timeout(timeout):
            # aiohttp refuses a message of max_msg_size bytes already, websockets only
            # the ones over it: the limit stays where it was, 16 MiB taken.
            ws = await session.ws_connect(
                url, headers=dict(headers), max_msg_size=MAX_MESSAGE_BYTES + 1, compress=0,
                heartbeat=PING_INTERVAL, autoclose=True, autoping=True,
            )
    except aiohttp.WSServerHandshakeError as exc:
        await session.close()
        raise _refused(exc.status) from None
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
        await session.close()
        raise UpstreamError(
            f"The upstream Realtime server could not be reached ({type(exc).__name__})."
        ) from None
    except BaseException:
        await session.close()
        raise
    return UpstreamWebSocket(session, ws)


def _refused(status: int) -> UpstreamError:
    return UpstreamError(
        f"The upstream Realtime server refused the session (HTTP {status}).",
        code="upstream_unauthorized" if status in (401, 403) else "upstream_error",
    )
