"""Connecting to an upstream Realtime WebSocket (GA protocol).

A call driver never opens a socket itself: it is handed an :class:`UpstreamConnector`
(the way httpx is handed a transport) and asks it for an :class:`UpstreamSocket` per call.
:class:`WebSocketConnector` is the real one; tests hand the driver an in-memory one, and
later connectors may route or authenticate differently without the driver changing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ..errors import UpstreamError

logger = logging.getLogger(__name__)

#: Audio deltas and long session objects can be large; the default 1 MiB is not enough.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class UpstreamSocket(Protocol):
    """One call's upstream Realtime session: messages in, messages out, a close."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Every message the upstream sends. Iteration ends when the session closes
        cleanly; websockets' ``ConnectionClosed`` may end it when it did not."""
        ...

    async def send(self, message: str) -> None:
        """Send one client event (JSON text)."""

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


async def connect_upstream(
    url: str, headers: Mapping[str, str], *, timeout: float = 10.0
) -> ClientConnection:
    """Open the Realtime WebSocket, or raise :class:`UpstreamError`.

    Compression is off: base64 audio barely compresses and deflate would cost CPU on every
    message. The error names no header, so no key can leak through it.
    """
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise UpstreamError(
            f"The upstream Realtime server refused the session (HTTP {status}).",
            code="upstream_unauthorized" if status in (401, 403) else "upstream_error",
        ) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise UpstreamError(
            f"The upstream Realtime server could not be reached ({type(exc).__name__})."
        ) from exc
