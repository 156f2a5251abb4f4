"""What the driver of a bridged WebSocket session needs of its protocol core: the seam
between the voice APIs' WebSocket interfaces, as :mod:`.call_protocol` is for calls.

A client of the hosted API's WebSocket interface (``client.realtime.connect()``,
``client.live.connect()``) talks to the relay, which holds an upstream session of the same
protocol for it. The server's :class:`~relay.server.websocket_session.WebSocketSession`
owns the I/O of one such session (the client's socket, the upstream socket, their tasks,
the drain's ending) and knows nothing of either protocol's events: it feeds what arrives
into a core implementing :class:`WebSocketProtocol` and sends what the core drains. The
Realtime API's core is :class:`~relay.protocol.realtime.websocket_core.WebSocketSessionCore`,
GPT-Live's is :class:`~relay.protocol.live.primary_core.LiveWebSocketCore`.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import RelayError
from .call_measures import CallMeasures
from .events import Event

__all__ = ["WebSocketProtocol"]


class WebSocketProtocol(Protocol):
    """One WebSocket session's protocol state, fed and drained by its driver (every call
    is synchronous; drain both outboxes after each input)."""

    #: The relay's id for the session (logs, limits).
    session_id: str
    #: Event counts and error codes (folded into the metrics when the session ends).
    measures: CallMeasures
    #: Set when the client floods the session: the driver ends it with this reason.
    end_reason: str | None

    @property
    def session_type(self) -> str:
        """The kind of session, for logs and metrics: ``"realtime"``,
        ``"transcription"`` or ``"live"``."""
        ...

    @property
    def upstream_intent(self) -> str | None:
        """The ``intent`` to open the upstream session with (None: a model's session)."""
        ...

    def start(self) -> None:
        """The upstream socket is open: queue what the relay says first (if anything)."""

    def client_message(self, text: str | bytes) -> None:
        """One message from the client's WebSocket."""

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream WebSocket."""

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream socket closed (the client's is closed next): tell the client why,
        unless the protocol already did."""

    def relay_error(self, error: RelayError) -> None:
        """An error of the relay's about the session itself (it is shutting down): an
        ``error`` event for the client."""

    def drain_client(self) -> list[Event]:
        """Events for the client's WebSocket."""
        ...

    @property
    def upstream_pending(self) -> bool:
        """Whether :meth:`drain_upstream` has anything."""
        ...

    def drain_upstream(self) -> list[Event]:
        """Events for the upstream WebSocket."""
        ...
