"""One server-side WebSocket session's protocol, without I/O: a client of the Realtime
WebSocket API (``client.realtime.connect()``, an Agents SDK ``RealtimeRunner``) bridged
to the relay's upstream.

Unlike a WebRTC call, the client owns its audio here: it appends input audio itself, gets
the model's ``response.output_audio.delta`` events and plays them, and truncates what it
cut off. The relay adds no ``output_audio_buffer.*`` events and never truncates. What it
keeps from a call is everything about the session and its guard rails:

- the session the client gets is the operator's and its key's (``RELAY_SESSION``, a sealed
  ``ek_`` key's session) with the relay's first ``session.update``; the client's first event
  is a ``session.created`` describing it, and each ``session.updated`` answers its asker;
- the locked fields (``RELAY_LOCKED_FIELDS``) hold for its ``session.update`` and
  ``response.create`` as for a call's; a session's type cannot change; a transcription
  session refuses ``response.*``;
- message size and rate limits, and a flood ends the session;
- a tool's credentials never reach the client, and whatever secret the relay sent
  upstream is masked in what the upstream says.

Feed it with :meth:`start`, :meth:`client_message` and :meth:`upstream_message`; drain
:meth:`drain_client` and :meth:`drain_upstream` after each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...errors import InvalidRequest, RelayError
from ...logs import CallLog
from ..call_measures import CallStats
from ..events import Event, error_event, new_event_id, parse_event
from ..flood import MessageLimits, PartyGuards
from ..outboxes import PartyOutboxes, SessionOutputs
from ..redact import Redactor
from .client_checks import check_response_overrides, check_supported, requested_update
from .policy import Policy, check_session
from .session_config import (
    TRANSCRIPTION,
    Session,
    conceal_tool_secrets,
    session_type,
    tool_secret_values,
)
from .session_updates import CLIENT, INITIAL, SessionUpdates

logger = logging.getLogger(__name__)


class WebSocketSessionCore(SessionOutputs):
    """The protocol of one WebSocket session, fed and drained by its driver (the drains:
    :class:`~relay.protocol.outboxes.SessionOutputs`)."""

    def __init__(self, session_id: str, session: Session, *, clock: Callable[[], float],
                 policy: Policy | None = None, limits: MessageLimits | None = None,
                 redact: Redactor | None = None) -> None:
        self.session_id = session_id
        self.log = CallLog(logger, session_id)
        self.requested_session = session
        #: ``"realtime"`` or ``"transcription"``; fixed for the session's life.
        self.session_type = session_type(session)
        self.policy: Policy = policy or {}
        #: The client's message size and rate (a WebSocket session has no sidebands).
        self._parties = PartyGuards(limits, None, clock)
        self._redact = redact or Redactor()
        stats = CallStats()
        #: Event counts and error codes (as a call's).
        self.measures = stats.measures
        #: The upstream's session, from its session.created/updated.
        self.session: Session = {}
        #: Set when the client floods the session: the driver ends it with this reason.
        self.end_reason: str | None = None
        self._updates = SessionUpdates()
        #: What waits for the client's WebSocket (open from the start) and the upstream.
        self._outboxes = PartyOutboxes(stats, channel_open=True)
        #: The upstream's session.created, held until the relay's first update is answered.
        self._created_sent = False

    @property
    def upstream_intent(self) -> str | None:
        """``"transcription"`` for a transcription session (the hosted API opens one at
        ``?intent=transcription``, naming no model), else None."""
        return TRANSCRIPTION if self.session_type == TRANSCRIPTION else None

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Queue the relay's first ``session.update``: the session's configuration (the
        client's formats are its own: the relay does not transcode a WebSocket)."""
        self._send_update(INITIAL, {"type": "session.update",
                                    "session": dict(self.requested_session)})

    def client_message(self, text: str | bytes) -> None:
        """One message from the client's WebSocket."""
        verdict = self._parties.check(text, CLIENT)
        if verdict.answer is not None:
            self._outboxes.to_client(error_event(verdict.answer))
        if verdict.flooding and self.end_reason is None:
            self.end_reason = "client flooded the session"
        if not verdict.admitted:
            return
        try:
            event = parse_event(text)
        except InvalidRequest as exc:
            self._outboxes.to_client(error_event(exc))
            return
        self.measures.count("from_client", event["type"])
        try:
            self._client_event(event)
        except RelayError as exc:
            event_id = event.get("event_id")
            self._outboxes.to_client(
                error_event(exc, event_id if isinstance(event_id, str) else None))

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream WebSocket: passed on, but for the answers to
        ``session.update`` (routed to their asker) and tool credentials (concealed)."""
        if self._redact:
            text = self._redact(text)
        try:
            event = parse_event(text)
        except InvalidRequest:
            return
        kind = event["type"]
        self.measures.count("from_upstream", kind)
        if kind in ("session.created", "session.updated"):
            self._session_answer(event)
        elif kind == "error" and (pending := self._updates.failed(event)) is not None:
            body = {**event["error"], "event_id": pending.own_id}
            self._outboxes.to_client({**event, "error": body})
            if pending.source == INITIAL:
                self._created(self.session)
        else:
            self._outboxes.to_client(event)

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream closed: tell the client why (its own close follows)."""
        reason = self._redact(reason)
        detail = f" ({code}{': ' + reason[:200] if reason else ''})" if code else ""
        self._outboxes.to_client(error_event(RelayError(
            f"The upstream Realtime session closed{detail}.", code="upstream_closed")))

    def relay_error(self, error: RelayError) -> None:
        """An error the relay met about the session itself (it is shutting down): an
        ``error`` event for the client."""
        self._outboxes.to_client(error_event(error))

    # ---------------------------------------------------------------- internals

    def _client_event(self, event: Event) -> None:
        kind = event["type"]
        check_supported(kind, self.session_type)
        if kind == "session.update":
            session = requested_update(event, self.session_type, "session")
            check_session(session, self.policy, "session")
            self._send_update(CLIENT, {**event, "session": session})
            return
        if kind == "response.create":
            check_response_overrides(event, self.policy)
        self._outboxes.to_upstream(event)

    def _send_update(self, source: str, event: Event) -> None:
        session = dict(event["session"])
        session.pop("model", None)  # the connection chose it
        self._redact = self._redact.with_secrets(tool_secret_values(session))
        self._outboxes.to_upstream(self._updates.send(source, {**event, "session": session}))

    def _session_answer(self, event: Event) -> None:
        session = event.get("session")
        if isinstance(session, dict):
            self.session = session
            event = {**event, "session": conceal_tool_secrets(session)}
        if event["type"] == "session.created":
            return  # the upstream's defaults: the client's session.created comes later
        pending = self._updates.answered()
        if pending is None:
            self.log.debug("unasked session.updated not passed on")
        elif pending.source == INITIAL:
            self._created(self.session)
        else:
            self._outboxes.to_client(event)

    def _created(self, session: Session) -> None:
        if not self._created_sent:
            self._created_sent = True
            self._outboxes.to_client({"type": "session.created", "event_id": new_event_id(),
                              "session": conceal_tool_secrets(session)})
