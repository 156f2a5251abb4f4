"""A recording upstream: what the model heard, and when the relay let go of the session."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator

from aiohttp import web

from relay.server.app import UPSTREAM
from relay.upstream.client import UpstreamConnector, UpstreamSocket


class RecordingSocket:
    """Passes everything through; keeps the input audio sent and the time of the close."""

    def __init__(self, inner: UpstreamSocket) -> None:
        self.inner: UpstreamSocket | None = inner
        #: Every ``input_audio_buffer.append``'s audio, 24 kHz PCM16, in order.
        self.audio = bytearray()
        #: ``time.monotonic()`` when the relay closed the socket.
        self.closed_at: float | None = None

        self._close_code: int | None = None
        self._close_reason: str | None = None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        assert self.inner is not None
        return self.inner.__aiter__()

    async def send(self, message: str) -> None:
        assert self.inner is not None
        if '"input_audio_buffer.append"' in message:
            self.audio += base64.b64decode(json.loads(message)["audio"])
        await self.inner.send(message)

    async def close(self) -> None:
        if self.inner is None:
            return
        self.closed_at = time.monotonic()
        await self.inner.close()
        self._close_code, self._close_reason = self.inner.close_code, self.inner.close_reason
        # Let the connection go: a test's app may outlive it (the lifecycle tests count).
        self.inner = None

    @property
    def close_code(self) -> int | None:
        return self.inner.close_code if self.inner is not None else self._close_code

    @property
    def close_reason(self) -> str | None:
        return self.inner.close_reason if self.inner is not None else self._close_reason


class RecordingConnector:
    """Wraps the app's connector; keeps every socket it opened."""

    def __init__(self, inner: UpstreamConnector) -> None:
        self.inner = inner
        self.sockets: list[RecordingSocket] = []

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        socket = RecordingSocket(await self.inner.connect(model))
        self.sockets.append(socket)
        return socket


def record_upstream(app: web.Application) -> list[RecordingConnector]:
    """Make ``app`` (not started yet) record its upstream sessions; the list gets the
    connector once the app has started."""
    found: list[RecordingConnector] = []

    async def wrap(app: web.Application) -> None:
        # Runs after the cleanup context that sets the upstream up.
        connector = RecordingConnector(app[UPSTREAM])
        app[UPSTREAM] = connector
        found.append(connector)

    app.on_startup.append(wrap)
    return found
