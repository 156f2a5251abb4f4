"""Who asked for each ``session.update``, so each ``session.updated`` reaches only its asker.

Several parties change one call's session: the relay itself (the call's configuration,
once, at the start), the client on its data channel, and later server-side controllers.
The upstream answers every ``session.update`` in order, with a ``session.updated`` or an
``error`` whose ``error.event_id`` names the update. Clients pair acknowledgements with
their own updates first-in, first-out (agents-js does), so an answer must never reach a
party that did not ask: :class:`SessionUpdates` keeps the updates in flight, in order,
and tells the call core whose each answer is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..call_protocol import CLIENT
from ..events import Event, new_event_id

#: The relay's own first update: the call's configuration. Its answer becomes the
#: client's ``session.created``.
INITIAL = "initial"

__all__ = ["CLIENT", "INITIAL", "PendingUpdate", "SessionUpdates"]


@dataclass(frozen=True)
class PendingUpdate:
    """One ``session.update`` sent upstream and not answered yet."""

    #: Who sent it: :data:`INITIAL`, :data:`CLIENT`, or another party's name.
    source: str
    #: The ``event_id`` it went upstream with (the relay fills one in when it had none).
    sent_id: str
    #: The ``event_id`` its sender gave it, if any: what an error must name back.
    own_id: str | None


class SessionUpdates:
    """The ``session.update`` events in flight, oldest first."""

    def __init__(self) -> None:
        self._pending: deque[PendingUpdate] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def send(self, source: str, event: Event) -> Event:
        """Record ``event`` from ``source``; return it as it goes upstream (with an id)."""
        own_id = event.get("event_id")
        own_id = own_id if isinstance(own_id, str) and own_id else None
        sent_id = own_id or new_event_id()
        self._pending.append(PendingUpdate(source, sent_id, own_id))
        return event if own_id else {**event, "event_id": sent_id}

    def answered(self) -> PendingUpdate | None:
        """A ``session.updated`` arrived: the oldest update it answers (None: unasked)."""
        return self._pending.popleft() if self._pending else None

    def failed(self, error: Event) -> PendingUpdate | None:
        """An ``error`` arrived: the update it names, removed (None: about something else)."""
        body = error.get("error")
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if not isinstance(event_id, str):
            return None
        for pending in self._pending:
            if pending.sent_id == event_id:
                self._pending.remove(pending)
                return pending
        return None
