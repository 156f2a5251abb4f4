"""One client's primary GPT-Live WebSocket, without I/O: what ``client.live.connect()``
of the official package opens (``GET /v1/live/sessions`` upgraded), bridged to an upstream
Live session of its own.

The client owns its audio here, as on the hosted primary WebSocket: it appends input
audio in the format it chose (``session.start``'s ``audio.format``; the relay does not
transcode a WebSocket) and plays the ``session.output_audio.delta`` events it gets. What
the relay adds is the session's guard rails (docs/LIVE_PROTOCOL.md §4 and §9):

- ``session.start`` comes first and once; nothing else is sent upstream before it. It is
  checked strictly before the upstream sees it (the WebSocket form: no ``idle_timeout_s``
  nor ``wake_policy``), under a sealed ``ek_`` key's configuration (a field the key set
  cannot be given another value: ``locked_field``; one the client left out takes the
  key's) and the operator's locked fields; on the embedded server, Responses and
  Decisions delegation are refused. A refused start leaves the client free to send a
  better one.
- ``session.update`` may change only what the protocol lets it change (``delegation``,
  ``triggers``): immutable fields, the locked ones among them, are refused by the relay,
  not left to the upstream.
- Only the primary connection's client events pass (``openai.types.live.ClientEvent``).
- The session snapshots (``session.started``, ``.updated``, ``.closed``) carry the relay's
  id for the session, the one its logs name.
- A fork (``GET …/fork`` upgraded): ``session.start`` names overrides of the stored
  session's configuration (``ForkSessionConfig``: ``audio.format``, ``delegation``,
  ``store``), which the relay applies to the stored configuration and conversation it was
  given, then checks as any start.
- Message size and rate limits (a flood ends the session), and whatever secret the relay
  sent upstream is masked in what the upstream says.

Feed it with :meth:`client_message` and :meth:`upstream_message`; drain
:meth:`drain_client` and :meth:`drain_upstream` after each. It implements
:class:`~relay.protocol.websocket_protocol.WebSocketProtocol`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import InvalidRequest, RelayError
from ...logs import CallLog
from ..call_measures import CallStats
from ..events import Event, parse_event
from ..flood import CLIENT, MessageLimits, PartyGuards
from ..outboxes import PartyOutboxes, SessionOutputs
from ..redact import Redactor
from .live_config import (
    Config,
    apply_locks,
    apply_update,
    check_config,
    check_servable,
    seal,
)
from .live_core import MEDIA_ONLY, SNAPSHOTS
from .live_events import (
    PRIMARY_CLIENT_EVENTS,
    check_client_event,
    client_event_id,
    live_error_event,
)
from .live_fork import fork_config

logger = logging.getLogger(__name__)

#: What a GPT-Live session is called in logs and metrics (``type="live"``), and the
#: ``type`` of a client secret minted for one.
LIVE = "live"
#: Where the session is: waiting for ``session.start``, started by the client (the
#: upstream has not answered yet), or started.
NEW, STARTING, STARTED = "new", "starting", "started"


class LiveWebSocketCore(SessionOutputs):
    """The protocol of one primary Live WebSocket session, fed and drained by its driver
    (the drains: :class:`~relay.protocol.outboxes.SessionOutputs`)."""

    def __init__(self, session_id: str, sealed: Mapping[str, Any] | None = None, *,
                 clock: Callable[[], float], policy: Mapping[str, Any] | None = None,
                 unset: Any = None, offline: bool = False,
                 limits: MessageLimits | None = None,
                 redact: Redactor | None = None,
                 fork: Mapping[str, Any] | None = None) -> None:
        self.session_id = session_id
        #: A fork's: the stored configuration carrying the stored conversation, which the
        #: client's ``session.start`` overrides (:func:`~.live_fork.fork_config`).
        self.fork: Config | None = None if fork is None else copy.deepcopy(dict(fork))
        self.log = CallLog(logger, session_id)
        #: The sealed key's configuration (None: a server key), media-only fields left
        #: out: a WebSocket session has none.
        self.sealed: Config | None = None if sealed is None else {
            k: copy.deepcopy(v) for k, v in sealed.items() if k not in MEDIA_ONLY}
        self.policy: Mapping[str, Any] = policy or {}
        self._unset = unset
        self._offline = offline
        #: The client's message size and rate (a WebSocket session has no sidebands).
        self._parties = PartyGuards(limits, None, clock)
        self._redact = redact or Redactor()
        stats = CallStats()
        #: Event counts and error codes (as a call's).
        self.measures = stats.measures
        self.end_reason: str | None = None
        #: NEW, STARTING or STARTED.
        self.state = NEW
        #: The configuration the relay let through (its ``session.start``, later updates).
        self.config: Config = {}
        #: The session as the upstream last described it (the relay's id in it).
        self.session: dict[str, Any] = {}
        #: The upstream's own id for the session (logs only: the client sees the relay's).
        self.upstream_session_id: str | None = None
        self._closed_cleanly = False
        #: The ``event_id`` of the start the upstream has not answered yet.
        self._start_id: str | None = None
        #: What waits for the client's WebSocket (open from the start) and the upstream.
        self._outboxes = PartyOutboxes(stats, channel_open=True)

    @property
    def session_type(self) -> str:
        """``"live"``: GPT-Live has one kind of session."""
        return LIVE

    @property
    def upstream_intent(self) -> str | None:
        """None: a Live session names its model in ``session.start``."""
        return None

    @property
    def model(self) -> str | None:
        """The model the client's ``session.start`` named (None before it)."""
        model = self.config.get("model")
        return model if isinstance(model, str) else None

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Nothing: a Live client speaks first (``session.start``)."""

    def client_message(self, text: str | bytes) -> None:
        """One message from the client's WebSocket."""
        verdict = self._parties.check(text, CLIENT)
        if verdict.answer is not None:
            self._outboxes.to_client(live_error_event(verdict.answer))
        if verdict.flooding and self.end_reason is None:
            self.end_reason = "client flooded the session"
        if not verdict.admitted:
            return
        event: Event = {}
        try:
            event = parse_event(text)
            self.measures.count("from_client", event["type"])
            self._client_event(event)
        except RelayError as exc:
            self._outboxes.to_client(live_error_event(exc, client_event_id(event)))

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream Live WebSocket: passed on, the session
        snapshots with the relay's id."""
        try:
            event = parse_event(self._redact(text if isinstance(text, str)
                                             else text.decode("utf-8", "replace")))
        except RelayError:
            return
        kind = event["type"]
        self.measures.count("from_upstream", kind)
        if kind in SNAPSHOTS and isinstance(event.get("session"), dict):
            event["session"] = self._snapshot(event["session"])
            self.session = event["session"]
        if kind == "session.started":
            self.state = STARTED
            self.log.info("live session started (model %s, upstream session %s)",
                          self.model, self.upstream_session_id)
        elif kind == "session.closed":
            self._closed_cleanly = True
        elif kind == "error" and self.state == STARTING and self._answers_start(event):
            # The upstream refused the start: the client may send a better one.
            self.state = NEW
        self._outboxes.to_client(event)

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream closed: say why, unless the session closed cleanly first."""
        if self._closed_cleanly:
            return
        reason = self._redact(reason)
        detail = f" ({code}{': ' + reason[:200] if reason else ''})" if code else ""
        self._outboxes.to_client(live_error_event(RelayError(
            f"The upstream Live session closed{detail}.", code="upstream_closed")))

    def relay_error(self, error: RelayError) -> None:
        """An error of the relay's about the session itself: an ``error`` for the client."""
        self._outboxes.to_client(live_error_event(error))

    # ---------------------------------------------------------------- internals

    def _client_event(self, event: Event) -> None:
        kind = event["type"]
        check_client_event(kind, PRIMARY_CLIENT_EVENTS, connection="a primary WebSocket")
        if kind == "session.start":
            event = self._session_start(event)
        elif self.state == NEW:
            raise InvalidRequest("Send session.start first and wait for session.started.",
                                 code="session_not_started", param="type")
        elif kind == "session.update":
            self.config = apply_update(self.config, event.get("session"))
        self._outboxes.to_upstream(event)

    def _session_start(self, event: Event) -> Event:
        """``event`` (a ``session.start``) with its configuration checked, sealed and
        locked, or :class:`InvalidRequest`."""
        if self.state != NEW:
            raise InvalidRequest("The session has already started.",
                                 code="session_already_started", param="type")
        requested = event.get("session")
        if self.fork is not None:
            config = check_config(fork_config(self.fork, requested, media=False),
                                  media=False)
        else:
            if not isinstance(requested, Mapping):
                check_config(requested, media=False)  # raises, naming the field
            config = check_config(seal(requested, self.sealed), media=False)
        config = apply_locks(config, self.policy, self._unset)
        check_servable(config, offline=self._offline)
        self.config = config
        self.state = STARTING
        self._start_id = client_event_id(event)
        return {**event, "session": config}

    def _answers_start(self, error: Event) -> bool:
        """Whether an upstream ``error`` is about the start (it names the start's
        ``event_id``, or no command: a start without an id is answered so)."""
        body = error.get("error")
        named = body.get("client_event_id") if isinstance(body, dict) else None
        named = named or error.get("client_event_id")
        return named is None or named == self._start_id

    def _snapshot(self, session: dict[str, Any]) -> dict[str, Any]:
        upstream_id = session.get("id")
        if isinstance(upstream_id, str) and upstream_id != self.session_id:
            self.upstream_session_id = upstream_id
        return dict(session, id=self.session_id)
