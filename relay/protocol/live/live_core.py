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
- A ``wake_policy`` (and ``idle_timeout_s``) is the relay's to keep (:mod:`.wake`): the
  microphone goes upstream only while the session is awake, and the relay says
  ``session.resumed`` / ``session.paused``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ...audio import RATE, SAMPLE_BYTES
from ...audio.playout import ItemPlayback, Playout
from ...errors import InvalidRequest, RelayError
from ..call_measures import CallStats
from ..events import Event, audio_append, b64, parse_event
from ..flood import CLIENT, MessageLimits, PartyGuards
from ..outboxes import CallOutputs, HeldMessages, PartyOutboxes
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
    check_client_event,
    client_event_id,
    live_error_event,
    live_event,
    live_notice,
)
from .live_restore import CONTEXT_COMMANDS, LiveHistory, restore_start
from .wake import check_update, resolved_policy, wake_gate

logger = logging.getLogger(__name__)

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


class LiveCore(CallOutputs):
    """The GPT-Live protocol of one WebRTC session, fed and drained by its driver: it
    decides what goes to each party, and the driver drains their outboxes
    (:class:`~relay.protocol.outboxes.CallOutputs`)."""

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
        #: What waits for the client's channel, each sideband and the upstream (the
        #: microphone's audio is counted in samples, not as events).
        self._outboxes = PartyOutboxes(self.stats,
                                       uncounted_upstream=("session.input_audio.append",))
        #: Client messages held until a controller configures the session.
        self._held = HeldMessages()
        #: Where the last reflected output audio ended on the session timeline.
        self._output_end_ms = 0
        #: GPT-Live has one kind of session, opened on the model.
        self.session_type: str | None = None
        self.upstream_intent: str | None = None
        #: The upstream said ``session.closed``: its socket closing next is no surprise.
        self._closed_cleanly = False
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
        #: The wake policy's gate (None: no policy, the microphone always goes upstream).
        self._wake = wake_gate(session, clock)
        #: ``session.resumed``/``.paused`` said before ``session.started`` had gone.
        self._wake_held: list[Event] = []

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Queue ``session.start``: the client's configuration, in the WebSocket form."""
        config = {k: v for k, v in self.requested_session.items()
                  if k not in MEDIA_ONLY and k != "client"}
        audio = dict(config.get("audio") or {})
        audio["format"] = dict(PCM24K)
        config["audio"] = audio
        self._start_config = config
        self._outboxes.to_upstream({"type": "session.start", "session": config})

    def peer_resumed(self, details: Mapping[str, Any]) -> None:
        """The call moved to a new peer connection: an ``info`` ``call_resumed`` with
        ``details`` first on the new channel (whatever the client's event permissions: it
        is the relay's own), before the events held meanwhile; every sideband gets it."""
        self._outboxes.resumed_with(live_event(
            "info", code=RESUMED_CODE, message="The session resumed on a new peer connection.",
            **details, events_held=self._outboxes.client_held))

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
        self._outboxes.drop_upstream("session.input_audio.append")
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
        self._outboxes.upstream_first([plan.event])

    @property
    def timeline_ms(self) -> int:
        """Where the session timeline is: milliseconds of microphone audio sent upstream
        (a WebRTC microphone streams continuously, silence included)."""
        if self._wake is not None:
            return self._wake.position_ms  # withheld audio included
        return self.stats.uplink_samples // SAMPLES_PER_MS

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio (24 kHz mono PCM16): upstream (while awake, under a wake
        policy), and reflected to sidebands; dropped while there is no upstream session
        (it would be stale by the restore)."""
        if self.upstream_down:
            self.stats.uplink_dropped_samples += len(pcm) // SAMPLE_BYTES
            return
        chunks, said = ([pcm], None) if self._wake is None else self._wake.audio(pcm)
        audio = b64(pcm)
        for chunk in chunks:
            self.stats.uplink_samples += len(chunk) // SAMPLE_BYTES
            sent = audio if chunk is pcm else b64(chunk)
            self._outboxes.to_upstream(audio_append("session.input_audio.append", sent))
        self._outboxes.reflect({"type": "session.input_audio.append", "audio": audio})
        if said is not None:
            self._wake_said(said)

    def client_message(self, text: str | bytes, source: str = CLIENT) -> None:
        """One message from the data channel, or from the sideband ``source`` names."""
        if not self._admit(text, source):
            return
        if source == CLIENT and self._held.holding:
            self._held.add(text)  # past the most held, dropped (the agent is late)
            return
        event: Event = {}
        try:
            event = parse_event(text)
            self.measures.count("from_client" if source == CLIENT else "from_sideband",
                                event["type"])
            self._check_command(event, source)
        except RelayError as exc:
            self._outboxes.reply(source, live_error_event(exc, client_event_id(event)))
            return
        self._outboxes.sent_by(client_event_id(event), source)
        self._outboxes.to_upstream(event)

    def hold_client_events(self) -> None:
        """Hold the client's data-channel messages until :meth:`release_client_events`."""
        self._held.hold()

    def release_client_events(self) -> None:
        """Handle the held client messages now, and hold no more."""
        for text in self._held.release():
            self.client_message(text)

    def relay_error(self, error: RelayError) -> None:
        """An error of the relay's about the session: to the client and every sideband."""
        self._broadcast(live_error_event(error))

    def hang_up(self) -> None:
        """The session is being hung up (``POST …/hangup``): tell the client and every
        sideband with ``session.closed`` (``close_requested``), as the hosted service does;
        the driver then closes the upstream socket, which ends the upstream session."""
        if self._closed_cleanly or not self.session:
            return
        self._closed_cleanly = True
        usage: dict[str, Any] = {"seconds": self.timeline_ms // 1000}
        self._broadcast(live_event("session.closed", reason="close_requested",
                                   session=dict(self.session),
                                   usage=usage if self._wake is None
                                   else self._wake.usage(usage)))

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
        if self._wake is not None:
            self._wake.upstream_event(event)
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
            self._outboxes.greeted()
            held, self._wake_held = self._wake_held, []
            for said in held:
                self._broadcast(said)

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
        self._outboxes.upstream_first([bare])
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
        if self._wake is not None:
            said = self._wake.tick(busy=bool(carried) or self.playout.queued > 0)
            if said is not None:
                self._wake_said(said)
        return frame

    # ----------------------------------------------------------------- outputs

    def drain_upstream(self) -> list[Event]:
        """Events for the upstream WebSocket (the context commands among them are the
        upstream session's from here: :meth:`~.live_restore.LiveHistory.context_sent`)."""
        events = self._outboxes.drain_upstream()
        for event in events:
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
        if source == CLIENT:
            check_client_event(kind, DATA_CHANNEL_CLIENT_EVENTS,
                               connection="a WebRTC data channel")
        else:
            check_client_event(kind, SIDEBAND_CLIENT_EVENTS, connection="a sideband")
        if source == CLIENT and self._client_allowed is not None \
                and kind not in self._client_allowed:
            raise InvalidRequest(
                f"'{kind}' is not allowed on this session's data channel "
                "(session.client.data_channel.allowed_client_events).",
                code="event_not_allowed", param="type")
        if kind == "session.update":
            check_update(event.get("session"))

    def _output_audio(self, event: Event) -> None:
        try:
            pcm = base64.b64decode(str(event.get("delta", "")), validate=True)
        except (binascii.Error, ValueError):
            self.stats.dropped_deltas += 1
            return
        self.playout.push(self._output, pcm)
        if not self._outboxes.has_sidebands:
            return
        start = max(self.timeline_ms, self._output_end_ms)
        end = start + len(pcm) // SAMPLE_BYTES // SAMPLES_PER_MS
        self._output_end_ms = end
        reflected = {"type": "session.output_audio.delta", "delta": event.get("delta"),
                     "start_ms": start, "end_ms": end}
        self._outboxes.reflect(reflected)

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
        policy = resolved_policy(self.requested_session)
        if policy is not None:
            snapshot["wake_policy"] = policy
        return snapshot

    def _wake_said(self, kind: str) -> None:
        """Say a wake transition (``session.resumed``/``.paused``) to the client and every
        sideband: after ``session.started``, which is always the channel's first event."""
        if self._closed_cleanly:
            return
        event = live_event(kind)
        logger.info("live %s: %s", self.call_id, kind.removeprefix("session."))
        if not self.session:  # session.started has not come yet
            self._wake_held.append(event)
        else:
            self._broadcast(event)

    def _tell_permissions(self) -> None:
        """An ``info`` for the frontend (``data_channel_permissions``) saying what its
        channel may carry, when the session restricts it."""
        if self._client_allowed is None and self._server_allowed is None:
            return
        info = live_event("info", code="data_channel_permissions", message=(
            f"This data channel may send {listed(self._client_allowed)} and receive "
            f"{listed(self._server_allowed)} (errors always)."))
        if server_event_allowed(self._server_allowed, info):
            self._outboxes.to_client(info)

    def _upstream_error(self, event: Event) -> None:
        body = event.get("error")
        sideband = self._outboxes.sender(
            body.get("client_event_id") if isinstance(body, dict) else None)
        if sideband is not None:
            self._outboxes.reply(sideband, event)
        else:
            self._broadcast(event)

    def _admit(self, text: str | bytes, source: str) -> bool:
        verdict = self._parties.check(text, source)
        if verdict.answer is not None:
            self._outboxes.reply(source, live_error_event(verdict.answer))
        if verdict.flooding and self.end_reason is None:
            self.end_reason = f"{source} flooded the session"
            logger.warning("live %s: %s sent too many messages too fast; ending it",
                           self.call_id, source)
        return verdict.admitted

    def _broadcast(self, event: Event) -> None:
        """A server event of the session: to the client (if its permissions allow) and
        to every sideband."""
        self._outboxes.broadcast(event,
                                 to_client=server_event_allowed(self._server_allowed, event))

    def notify_client(self, event: Event) -> None:
        """The relay's own notice for the client's channel (``relay.recording.started``),
        as GPT-Live's ``info`` (:func:`~.live_events.live_notice`): right after
        ``session.started``, or at once if that has gone."""
        super().notify_client(live_notice(event))

    def _notice(self, event: Event) -> None:
        """A notice of the relay's own: to the client (whatever its permissions: it is
        about the call's transport) and to every sideband."""
        self._outboxes.broadcast(event)


def listed(names: frozenset[str] | None) -> str:
    """Event types for a person: ``every event`` (None), ``nothing`` (empty), or a list."""
    return "every event" if names is None else ", ".join(sorted(names)) or "nothing"
