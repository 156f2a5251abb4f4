"""An upstream Realtime session in memory, handed to a call by injection: no socket at all.

:class:`FakeConnector` stands where :class:`relay.upstream.client.WebSocketConnector`
would; each :class:`FakeSocket` it hands out lets the test push server events and read
what the call sent upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from relay.upstream.client import UpstreamSocket


class FakeSocket:
    """An upstream session in memory: the test pushes server events and reads client ones."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.sent_event = asyncio.Event()
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()

    def push(self, event: dict[str, object]) -> None:
        self._incoming.put_nowait(json.dumps(event))

    def hang_up(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._incoming.put_nowait(None)

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))
        self.sent_event.set()

    async def close(self) -> None:
        self.closed = True
        self._incoming.put_nowait(None)

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while (message := await self._incoming.get()) is not None:
            yield message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()


class FakeConnector:
    """Hands out sessions of ``socket_type`` (:class:`FakeSocket` or a subclass whose
    sends behave otherwise), or raises what it is told to."""

    def __init__(self, error: Exception | None = None, *,
                 socket_type: type[FakeSocket] | None = None) -> None:
        self.sockets: list[FakeSocket] = []
        self.models: list[str | None] = []
        self.error = error
        self.socket_type = socket_type or FakeSocket

    async def connect(self, model: str | None = None, *,
                      intent: str | None = None) -> UpstreamSocket:
        self.models.append(model)
        if self.error is not None:
            raise self.error
        socket = self.socket_type()
        self.sockets.append(socket)
        return socket
