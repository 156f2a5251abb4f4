"""One GPT-Live session's protocol state machine, without I/O: the Live sibling of
:class:`~relay.protocol.realtime.call_core.CallCore`, run by the same call driver.

The driver feeds it what arrives — upstream events from the primary Live WebSocket,
data-channel and sideband messages, the microphone's audio — and pulls 20 ms frames of
the model's audio from it on the outbound track's clock. Its rules (docs/LIVE_PROTOCOL.md):

- It opens the upstream session with ``session.start``: the client's configuration with
  the media-only fields left out and ``audio.format`` pinned to the relay's PCM16 at
  24 kHz. The client's first data-channel event is the upstream's ``session.started``,
  its ``session.id`` replaced by the relay's id for the session (the one the client's
  hangup and a sideband name); every later session snapshot gets the same id.
- ``session.output_audio.delta`` is audio for the RTP track, never for the data channel;
  sidebands receive it reflected with ``start_ms``/``end_ms`` on the session timeline, and
  receive the microphone reflected as ``session.input_audio.append`` events.
- Interruption is the upstream's: GPT-Live has no truncation command. It stops sending
  audio when the user speaks over it and its transcript deltas cover only what it sent,
  so the relay passes audio into its paced playout and never cuts or rewrites it.
- The frontend's ``client.data_channel`` permissions apply to the data channel (both
  ways); sidebands are trusted and see and may send everything a sideband may.
- An ``error`` about a command a sideband sent goes back to that sideband alone.
- The call outlives its transports, as a Realtime call does. On a new peer connection (a
  resume) the client's first event is an ``info`` ``call_resumed``. When the upstream
  session closes under the call (see :func:`~..upstream_loss.worth_reopening`, or its
  ``session.closed`` says ``expired``), the driver opens a new one and the core starts it
  with the call's configuration and its conversation as text
  (:mod:`.live_restore`); the client and the sidebands get one ``info``
  ``upstream_restored`` once it has started. Timed events of the new session are placed
  on the call's timeline. The relay's notices are ``info`` events, so every event a Live
  client gets is one of the protocol's.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from ...audio import RATE, SAMPLE_BYTES
from ...audio.playout import ItemPlayback, Playout
from ...errors import InvalidRequest, RelayError
from ..call_measures import CallStats
from ..channel import DEFAULT_MAX_MESSAGE_SIZE, channel_message
from ..events import Event, parse_event
from ..flood import MessageLimits, PartyGuards
from ..redact import Redactor
from ..upstream_loss import worth_reopening
from .live_config import (
    PCM24K,
    allowed_client_events,
    allowed_server_events,
    server_event_allowed,
)
from .live_events import (
    DATA_CHANNEL_CLIENT_EVENTS,
    SIDEBAND_CLIENT_EVENTS,
    client_event_id,
    live_error_event,
    live_event,
)
from .live_restore import CONTEXT_COMMANDS, LiveHistory, restore_start

logger = logging.getLogger(__name__)

CLIENT = "client"
#: Events held for a client whose data channel is not open yet (older ones are dropped).
MAX_HELD_EVENTS = 10_000
#: Sideband command ids remembered for routing upstream errors back to their sender.
MAX_TRACKED_EVENTS = 1024
#: Configuration fields that only the WebRTC creation request takes.
MEDIA_ONLY = ("idle_timeout_s", "wake_policy")
#: Server events that describe the session (their ``session.id`` is the relay's id).
SNAPSHOTS = ("session.started", "session.updated", "session.closed")
SAMPLES_PER_MS = RATE // 1000
#: The ``info`` codes of the relay's notices: the call resumed on a new peer connection,
#: its session was rebuilt on a new upstream session.
RESUMED_CODE = "call_resumed"
RESTORED_CODE = "upstream_restored"
#: Fields of a server event that place it on the session timeline.
TIMED_FIELDS = ("start_ms", "end_ms", "offset_ms")


class LiveCore:
    """The GPT-Live protocol of one WebRTC session, fed and drained by its driver."""

    #: What ``GET /v1/live/sessions/{id}`` names the object.
    view_object = "live.session"

    def __init__(
        self,
        call_id: str,
        session: dict[str, Any],
        *,
        max_playout_samples: int,
        clock: Callable[[], float],
        policy: Mapping[str, Any] | None = None,
        client_limits: MessageLimits | None = None,
        sideband_limits: MessageLimits | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.call_id = call_id
        self.requested_session = session
        self._clock = clock
        self._redact = redact or Redactor()
        #: Each party's message size and rate (the client's channel, each sideband).
        self._parties = PartyGuards(client_limits, sideband_limits, clock)
        self.end_reason: str | None = None
        self.stats = CallStats()
        self.measures = self.stats.measures
        self.playout = Playout(max_playout_samples)
        self._output = ItemPlayback("output", "live")
        #: The session as the upstream last described it (the relay's id in it).
        self.session: dict[str, Any] = {}
        #: The upstream's own id for the session (logs only: clients see the relay's).
        self.upstream_session_id: str | None = None
        self._client_allowed = allowed_client_events(session)
        self._server_allowed = allowed_server_events(session)
        self._to_client: deque[Event] = deque()
        self._sidebands: dict[str, list[Event]] = {}
        self._sideband_commands: OrderedDict[str, str] = OrderedDict()
        self._to_upstream: list[Event] = []
        self._channel_open = False
        self._max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self._held_from_client: list[str | bytes] | None = None
        #: Where the last reflected output audio ended on the session timeline.
        self._output_end_ms = 0
        #: GPT-Live has one kind of session, opened on the model.
        self.session_type: str | None = None
        self.upstream_intent: str | None = None
        #: The upstream said ``session.closed``: its socket closing next is no surprise.
        self._closed_cleanly = False
        #: The relay's own notices, held until ``session.started`` has gone (None: it has).
        self._after_greeting: list[Event] | None = []
        #: What ``session.start`` carried (a restore starts a new session from it).
        self._start_config: dict[str, Any] = {}
        #: The conversation as text, for a new upstream session (:mod:`.live_restore`).
        self.history = LiveHistory()
        #: True from the upstream's loss until a new session is open.
        self.upstream_down = False
        #: The upstream said the session reached its longest duration (it closes next).
        self._expired = False
        #: The session was updated (its ``delegation``/``triggers`` may differ from start).
        self._updated = False
        #: Restores done; the one under way (its ``session.start`` not answered yet); when
        #: the lost session went; where the current session's timeline starts on the call's.
        self.restores = 0
        self._restore: dict[str, Any] | None = None
        self._lost_at: float | None = None
        self._timeline_offset_ms = 0

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Queue ``session.start``: the client's configuration, in the WebSocket form."""
        config = {k: v for k, v in self.requested_session.items()
                  if k not in MEDIA_ONLY and k != "client"}
        audio = dict(config.get("audio") or {})
        audio["format"] = dict(PCM24K)
        config["audio"] = audio
        self._start_config = config
        self._to_upstream.append({"type": "session.start", "session": config})

    def channel_closed(self) -> None:
        """The client's channel went with its peer connection: hold events for the next
        (a resume)."""
        self._channel_open = False

    def peer_resumed(self, details: Mapping[str, Any]) -> None:
        """The call moved to a new peer connection: an ``info`` ``call_resumed`` with
        ``details`` first on the new channel (whatever the client's event permissions: it
        is the relay's own), before the events held meanwhile; every sideband gets it."""
        event = live_event("info", code=RESUMED_CODE,
                           message="The session resumed on a new peer connection.",
                           **details, events_held=len(self._to_client))
        self.measures.count("to_client", "info")
        self._to_client.appendleft(event)
        for outbox in self._sidebands.values():
            outbox.append(event)

    @property
    def idle(self) -> bool:
        """No model audio waits to be played, and no restore is under way."""
        return self.playout.queued == 0 and self._restore is None

    def upstream_lost(self, close_code: int | None) -> str | None:
        """The upstream session closed under the call with ``close_code`` (None: none
        received). When a new one is worth opening (a transient close, or the session
        expired), return why the old one went and drop the microphone's audio until
        :meth:`upstream_reopened` (it would be stale); None when the session closed
        (hung up, or any other ``session.closed``) or the close would only happen again:
        the call ends."""
        if self.upstream_down:
            return "upstream_closed"
        if self._closed_cleanly or not worth_reopening(close_code, self._expired):
            return None
        self.upstream_down = True
        self._lost_at = self._clock()
        self._to_upstream = [e for e in self._to_upstream
                             if e["type"] != "session.input_audio.append"]
        if self._expired:
            return "session_expired"
        return f"upstream_closed ({close_code})" if close_code else "upstream_closed"

    def upstream_reopened(self, reason: str) -> None:
        """A new upstream session is open in place of the lost one: queue, ahead of
        anything else, the ``session.start`` that rebuilds the call's session with its
        conversation (:func:`~.live_restore.restore_start`); the client hears of it once
        the new session has started (``reason``: why the old one went)."""
        self.upstream_down = False
        self._expired = False
        self.restores += 1
        self.stats.upstream_restores = self.restores
        history = self.history.messages()
        plan = restore_start(self._start_config, self.session if self._updated else None,
                             history, self.restores)
        lost_for = None if self._lost_at is None else self._clock() - self._lost_at
        self._restore = {
            "event_id": plan.event["event_id"], "bare": None,
            "report": {"reason": reason, "messages_restored": plan.restored,
                       "messages_dropped": plan.dropped, "history_refused": False,
                       "seconds_without_upstream":
                           None if lost_for is None else round(lost_for, 3),
                       "uplink_ms_dropped": self.stats.uplink_dropped_samples * 1000 // RATE},
        }
        if plan.restored:
            # Should the new session refuse the history (its token limit), start it bare.
            bare = restore_start(self._start_config, plan.event["session"], [], self.restores)
            bare.event["event_id"] += "_bare"
            self._restore["bare"] = bare.event
        # The call's timeline goes on where the lost session's ended.
        self._timeline_offset_ms = self.timeline_ms
        self._to_upstream.insert(0, plan.event)

    def channel_opened(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """The client's data channel is open: held events may flow."""
        self._channel_open = True
        self._max_message_size = max_message_size

    @property
    def timeline_ms(self) -> int:
        """Where the session timeline is: milliseconds of microphone audio sent upstream
        (a WebRTC microphone streams continuously, silence included)."""
        return self.stats.uplink_samples // SAMPLES_PER_MS

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio (24 kHz mono PCM16): upstream, and reflected to sidebands
        (dropped while there is no upstream session: it would be stale by the restore)."""
        if self.upstream_down:
            self.stats.uplink_dropped_samples += len(pcm) // SAMPLE_BYTES
            return
        self.stats.uplink_samples += len(pcm) // SAMPLE_BYTES
        audio = base64.b64encode(pcm).decode()
        self._to_upstream.append({"type": "session.input_audio.append", "audio": audio})
        for outbox in self._sidebands.values():
            outbox.append({"type": "session.input_audio.append", "audio": audio})

    def client_message(self, text: str | bytes, source: str = CLIENT) -> None:
        """One message from the data channel, or from the sideband ``source`` names."""
        if not self._admit(text, source):
            return
        if source == CLIENT and self._held_from_client is not None:
            if len(self._held_from_client) < MAX_HELD_EVENTS:
                self._held_from_client.append(text)
            return
        event: Event = {}
        try:
            event = parse_event(text)
            self.measures.count("from_client" if source == CLIENT else "from_sideband",
                                event["type"])
            self._check_command(event, source)
        except RelayError as exc:
            self._reply(source, live_error_event(exc, client_event_id(event)))
            return
        cid = client_event_id(event)
        if source != CLIENT and cid is not None:
            self._sideband_commands[cid] = source
            while len(self._sideband_commands) > MAX_TRACKED_EVENTS:
                self._sideband_commands.popitem(last=False)
        self._to_upstream.append(event)

    def hold_client_events(self) -> None:
        """Hold the client's data-channel messages until :meth:`release_client_events`."""
        if self._held_from_client is None:
            self._held_from_client = []

    def release_client_events(self) -> None:
        """Handle the held client messages now, and hold no more."""
        held, self._held_from_client = self._held_from_client, None
        for text in held or ():
            self.client_message(text)

    def relay_error(self, error: RelayError) -> None:
        """An error of the relay's about the session: to the client and every sideband."""
        self._broadcast(live_error_event(error))

    def notify_client(self, event: Event) -> None:
        """An event of the relay's own (``relay.*``) for the client's channel only: right
        after ``session.started`` (the channel's first event), or at once if it has gone."""
        if self._after_greeting is None:
            self._to_channel(event)
        else:
            self._after_greeting.append(event)

    def hang_up(self) -> None:
        """The session is being hung up (``POST …/hangup``): tell the client and every
        sideband with ``session.closed`` (``close_requested``), as the hosted service does;
        the driver then closes the upstream socket, which ends the upstream session."""
        if self._closed_cleanly or not self.session:
            return
        self._closed_cleanly = True
        self._broadcast(live_event("session.closed", reason="close_requested",
                                   session=dict(self.session),
                                   usage={"seconds": self.timeline_ms // 1000}))

    def attach_sideband(self, name: str) -> None:
        """A trusted server joined as ``name``: it gets the session's events from now on
        (no ``session.started``: it attached to a session already started)."""
        self._sidebands[name] = []

    def detach_sideband(self, name: str) -> None:
        """The sideband ``name`` left."""
        self._sidebands.pop(name, None)
        self._parties.forget(name)

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream Live WebSocket."""
        try:
            event = parse_event(self._redact(text if isinstance(text, str)
                                             else text.decode("utf-8", "replace")))
        except RelayError:
            self.stats.bad_upstream_messages += 1
            return
        kind = event["type"]
        self.measures.count("from_upstream", kind)
        if kind == "session.output_audio.delta":
            self._output_audio(event)
            return
        if self._restore is not None and self._restore_answer(event):
            return
        self._place(event)
        self.history.observe(event)
        if kind == "session.closed":
            if self._closed_cleanly:
                return  # the relay said it already (a hangup)
            if event.get("reason") == "expired" and not self._expired:
                # The session's duration is up, not the call's: the relay opens a new
                # session when the socket closes next, and the client hears of that.
                self._expired = True
                return
            self._closed_cleanly = True
        elif kind == "session.updated":
            self._updated = True
        if kind in SNAPSHOTS and isinstance(event.get("session"), dict):
            event["session"] = self._snapshot(event["session"])
            self.session = event["session"]
        if kind == "error":
            self._upstream_error(event)
            return
        self._broadcast(event)
        if kind == "session.started":
            self._tell_permissions()
            notices, self._after_greeting = self._after_greeting or [], None
            for notice in notices:
                self._to_channel(notice)

    def _restore_answer(self, event: Event) -> bool:
        """Take the new session's answer to a restore's ``session.start`` (True: not to be
        passed on): its ``session.started`` completes the restore, an ``error`` naming it
        retries without the history (once), then goes to everyone."""
        restore = self._restore
        assert restore is not None
        kind = event["type"]
        if kind == "session.started":
            self._restore = None
            session = event.get("session")
            if isinstance(session, dict):
                upstream_id = session.get("id")
                if isinstance(upstream_id, str):
                    self.upstream_session_id = upstream_id
                if "expires_at" in session and self.session:
                    self.session["expires_at"] = session["expires_at"]
            report = restore["report"]
            logger.info("live %s: upstream session restored (%s): %d messages, %d left out%s",
                        self.call_id, report["reason"], report["messages_restored"],
                        report["messages_dropped"],
                        ", history refused" if report["history_refused"] else "")
            self._notice(live_event("info", code=RESTORED_CODE, message=(
                "The upstream session was lost and a new one carries the session on "
                f"({report['reason']})."), **report))
            return True
        if kind != "error":
            return False
        body = event.get("error")
        cid = event.get("client_event_id")
        if cid is None and isinstance(body, dict):
            cid = body.get("client_event_id")
        if cid != restore["event_id"]:
            return False
        bare = restore["bare"]
        if bare is None:
            self._restore = None
            return False  # the new session refused the call's own configuration
        logger.warning("live %s: the new upstream session refused the history (%s); "
                       "starting it without", self.call_id,
                       body.get("message") if isinstance(body, dict) else body)
        restore.update(event_id=bare["event_id"], bare=None)
        restore["report"].update(history_refused=True, messages_restored=0,
                                 messages_dropped=len(self.history))
        self._to_upstream.insert(0, bare)
        return True

    def _place(self, event: Event) -> None:
        """Put a timed event of a restored session on the call's timeline (a new session's
        timeline starts at zero; the call's went on)."""
        offset = self._timeline_offset_ms
        if offset:
            for key in TIMED_FIELDS:
                value = event.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    event[key] = value + offset

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream WebSocket closed: say why, unless the session closed cleanly."""
        if self._closed_cleanly:
            return
        reason = self._redact(reason)
        detail = f" ({code}{': ' + reason[:200] if reason else ''})" if code else ""
        self._broadcast(live_error_event(RelayError(
            f"The upstream Live session closed{detail}.", code="upstream_closed")))

    def next_frame(self) -> bytes:
        """The next 20 ms of the model's audio for the peer (silence when there is none)."""
        frame, carried = self.playout.pull()
        self.stats.frames_out += 1
        if carried:
            self.stats.audio_frames_out += 1
        return frame

    # ----------------------------------------------------------------- outputs

    def drain_client_messages(self) -> list[str]:
        """The data channel's messages, encoded to fit it; none until it is open."""
        if not self._channel_open or not self._to_client:
            return []
        events = list(self._to_client)
        self._to_client.clear()
        return [channel_message(event, self._max_message_size) for event in events]

    def drain_sideband(self, name: str) -> list[Event]:
        """Events for the sideband ``name``."""
        outbox = self._sidebands.get(name)
        if not outbox:
            return []
        self._sidebands[name] = []
        return outbox

    @property
    def upstream_pending(self) -> bool:
        """Whether :meth:`drain_upstream` has anything."""
        return bool(self._to_upstream)

    def drain_upstream(self) -> list[Event]:
        """Events for the upstream WebSocket."""
        events, self._to_upstream = self._to_upstream, []
        for event in events:
            if event["type"] != "session.input_audio.append":
                self.measures.count("to_upstream", event["type"])
                if event["type"] in CONTEXT_COMMANDS:
                    self.history.context_sent(event)  # the session takes it from here
        return events

    # ---------------------------------------------------------------- internals

    def _check_command(self, event: Event, source: str) -> None:
        """Refuse a command this party may not send, with the reason."""
        kind = event["type"]
        if kind == "session.start":
            raise InvalidRequest("The session has already started: creating it started it.",
                                 code="session_already_started", param="type")
        if kind == "session.input_audio.append" and source == CLIENT:
            raise InvalidRequest("A WebRTC session's audio travels on its RTP track.",
                                 code="invalid_value", param="type")
        known = DATA_CHANNEL_CLIENT_EVENTS if source == CLIENT else SIDEBAND_CLIENT_EVENTS
        if kind not in known:
            raise InvalidRequest(f"Unknown Live client event type '{kind}'.",
                                 code="invalid_value", param="type")
        if source == CLIENT and self._client_allowed is not None \
                and kind not in self._client_allowed:
            raise InvalidRequest(
                f"'{kind}' is not allowed on this session's data channel "
                "(session.client.data_channel.allowed_client_events).",
                code="event_not_allowed", param="type")

    def _output_audio(self, event: Event) -> None:
        try:
            pcm = base64.b64decode(str(event.get("delta", "")), validate=True)
        except (binascii.Error, ValueError):
            self.stats.dropped_deltas += 1
            return
        self.playout.push(self._output, pcm)
        if not self._sidebands:
            return
        start = max(self.timeline_ms, self._output_end_ms)
        end = start + len(pcm) // SAMPLE_BYTES // SAMPLES_PER_MS
        self._output_end_ms = end
        reflected = {"type": "session.output_audio.delta", "delta": event.get("delta"),
                     "start_ms": start, "end_ms": end}
        for outbox in self._sidebands.values():
            outbox.append(reflected)

    def _snapshot(self, session: dict[str, Any]) -> dict[str, Any]:
        """A session snapshot as the client sees it: the relay's id, the client's own
        frontend permissions, no WebSocket audio format (WebRTC negotiated its own)."""
        upstream_id = session.get("id")
        if isinstance(upstream_id, str) and upstream_id != self.call_id:
            self.upstream_session_id = upstream_id
        snapshot = dict(session, id=self.call_id)
        audio = snapshot.get("audio")
        if isinstance(audio, dict) and "format" in audio:
            snapshot["audio"] = {k: v for k, v in audio.items() if k != "format"}
        for key in ("client", *MEDIA_ONLY):
            if key in self.requested_session:
                snapshot[key] = self.requested_session[key]
        return snapshot

    def _tell_permissions(self) -> None:
        """An ``info`` for the frontend (``data_channel_permissions``) saying what its
        channel may carry, when the session restricts it."""
        if self._client_allowed is None and self._server_allowed is None:
            return
        info = live_event("info", code="data_channel_permissions", message=(
            f"This data channel may send {listed(self._client_allowed)} and receive "
            f"{listed(self._server_allowed)} (errors always)."))
        if server_event_allowed(self._server_allowed, info):
            self._to_channel(info)

    def _upstream_error(self, event: Event) -> None:
        body = event.get("error")
        cid = body.get("client_event_id") if isinstance(body, dict) else None
        sideband = self._sideband_commands.pop(cid, None) if isinstance(cid, str) else None
        if sideband is not None:
            self._reply(sideband, event)
        else:
            self._broadcast(event)

    def _admit(self, text: str | bytes, source: str) -> bool:
        verdict = self._parties.check(text, source)
        if verdict.answer is not None:
            self._reply(source, live_error_event(verdict.answer))
        if verdict.flooding and self.end_reason is None:
            self.end_reason = f"{source} flooded the session"
            logger.warning("live %s: %s sent too many messages too fast; ending it",
                           self.call_id, source)
        return verdict.admitted

    def _broadcast(self, event: Event) -> None:
        """A server event of the session: to the client (if its permissions allow) and
        to every sideband."""
        if server_event_allowed(self._server_allowed, event):
            self._to_channel(event)
        for outbox in self._sidebands.values():
            self.measures.count("to_sideband", event["type"])
            outbox.append(event)

    def _notice(self, event: Event) -> None:
        """A notice of the relay's own: to the client (whatever its permissions: it is
        about the call's transport) and to every sideband."""
        self._to_channel(event)
        for outbox in self._sidebands.values():
            self.measures.count("to_sideband", event["type"])
            outbox.append(event)

    def _reply(self, source: str, event: Event) -> None:
        if source == CLIENT:
            self._to_channel(event)
        elif source in self._sidebands:
            self.measures.count("to_sideband", event["type"])
            self._sidebands[source].append(event)
        if event["type"] == "error":
            self.measures.error(event.get("error"))

    def _to_channel(self, event: Event) -> None:
        if not self._channel_open and len(self._to_client) >= MAX_HELD_EVENTS:
            self._to_client.popleft()
            self.stats.held_dropped += 1
        self.measures.count("to_client", event["type"])
        if event["type"] == "error":
            self.measures.error(event.get("error"))
        self._to_client.append(event)


def listed(names: frozenset[str] | None) -> str:
    """Event types for a person: ``every event`` (None), ``nothing`` (empty), or a list."""
    return "every event" if names is None else ", ".join(sorted(names)) or "nothing"
