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
from ..events import Event, parse_event
from ..flood import CLIENT, MessageLimits, PartyGuards
from ..outboxes import CallOutputs, HeldMessages, PartyOutboxes
from ..redact import Redactor
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
)
from .wake import check_update, resolved_policy, wake_gate

logger = logging.getLogger(__name__)

#: Configuration fields that only the WebRTC creation request takes.
MEDIA_ONLY = ("idle_timeout_s", "wake_policy")
#: Server events that describe the session (their ``session.id`` is the relay's id).
SNAPSHOTS = ("session.started", "session.updated", "session.closed")
SAMPLES_PER_MS = RATE // 1000


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
        #: A GPT-Live session is never reopened on a new upstream session (see
        #: :meth:`upstream_lost`), so the upstream is never "down" while the call lives.
        self.upstream_down = False
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
        self._outboxes.to_upstream({"type": "session.start", "session": config})

    @property
    def idle(self) -> bool:
        """No model audio waits to be played."""
        return self.playout.queued == 0

    def upstream_lost(self, close_code: int | None) -> str | None:
        """A GPT-Live session is not rebuilt on a new upstream session (its state cannot be
        created by a client as a Realtime conversation can): None, the call ends."""
        del close_code
        return None

    def upstream_reopened(self, reason: str) -> None:
        """Never called: :meth:`upstream_lost` asks for no new session."""
        raise RuntimeError(f"a GPT-Live session is not reopened ({reason})")

    @property
    def timeline_ms(self) -> int:
        """Where the session timeline is: milliseconds of microphone audio sent upstream
        (a WebRTC microphone streams continuously, silence included)."""
        if self._wake is not None:
            return self._wake.position_ms  # withheld audio included
        return self.stats.uplink_samples // SAMPLES_PER_MS

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio (24 kHz mono PCM16): upstream (while awake, under a wake
        policy), and reflected to sidebands."""
        chunks, said = ([pcm], None) if self._wake is None else self._wake.audio(pcm)
        audio = base64.b64encode(pcm).decode()
        for chunk in chunks:
            self.stats.uplink_samples += len(chunk) // SAMPLE_BYTES
            sent = audio if chunk is pcm else base64.b64encode(chunk).decode()
            self._outboxes.to_upstream({"type": "session.input_audio.append", "audio": sent})
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
        if kind == "session.closed":
            if self._closed_cleanly:
                return  # the relay said it already (a hangup)
            self._closed_cleanly = True
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


def listed(names: frozenset[str] | None) -> str:
    """Event types for a person: ``every event`` (None), ``nothing`` (empty), or a list."""
    return "every event" if names is None else ", ".join(sorted(names)) or "nothing"
