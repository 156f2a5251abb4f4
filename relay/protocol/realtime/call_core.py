"""One call's protocol state machine, without I/O.

The driver feeds it what arrives — upstream events, data-channel messages, uplink audio,
the data channel opening — and pulls 20 ms frames of assistant audio from it on the
outbound track's clock. After each feed it drains two lists: events for the client's
``oai-events`` channel and events for the upstream Realtime WebSocket.

Everything about the protocol is decided here: which events go where (the client's
channel, the sidebands, the upstream), and, through
:class:`~relay.protocol.realtime.playback.Playback`, the ``output_audio_buffer.*`` events only
WebRTC has and barge-in.

The client's story of its session is the hosted endpoint's: its first event is a
``session.created`` that describes the call's effective session (the relay's first
``session.update`` applied: the upstream's own ``session.created``, with its defaults, is
not passed on), and each ``session.updated`` it gets answers one of its own updates
(:mod:`relay.protocol.realtime.session_updates` pairs answers with askers).

A call served by a server-side agent holds the client's data-channel events (never its
audio) until a controller's first ``session.update`` has gone upstream, so that what the
client says first reaches a model the agent has already configured (its tools above all).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...audio import RATE, SAMPLE_BYTES
from ...errors import InvalidRequest, RelayError
from ...logs import CallLog
from ..call_measures import CallStats, UplinkArrivals
from ..events import Event, audio_append, b64, error_event, new_event_id, parse_event
from ..flood import MessageLimits, PartyGuards
from ..outboxes import CallOutputs, HeldMessages, PartyOutboxes
from ..redact import Redactor
from .client_checks import check_response_overrides, check_supported, requested_update
from .playback import Playback
from .policy import Policy, check_session
from .session_config import (
    TRANSCRIPTION,
    Session,
    conceal_tool_secrets,
    interrupt_response,
    pin_relay_formats,
    session_type,
    speech_padding_ms,
    tool_secret_values,
)
from .session_updates import CLIENT, INITIAL, RESTORE, PendingUpdate, SessionUpdates
from .upstream_restore import (
    RESTORE_PREFIX,
    ConversationMirror,
    restorable_session,
    restore_items,
    worth_reopening,
)

logger = logging.getLogger(__name__)

#: The relay's own event telling the client that its upstream session was replaced.
RESTORED_EVENT = "relay.upstream.restored"
#: The upstream error that announces the end of a session at its longest duration
#: (the hosted service's 60 minutes): the relay rolls the session over instead.
SESSION_EXPIRED = "session_expired"


class CallCore(CallOutputs):
    """The Realtime protocol of one call, fed and drained by its driver (a
    :class:`~relay.protocol.call_protocol.CallProtocol`): it decides what goes to each
    party, and the driver drains their outboxes (:class:`~relay.protocol.outboxes.CallOutputs`)."""

    view_object = "realtime.call"

    def __init__(
        self,
        call_id: str,
        session: Session,
        *,
        max_playout_samples: int,
        clock: Callable[[], float],
        policy: Policy | None = None,
        client_limits: MessageLimits | None = None,
        sideband_limits: MessageLimits | None = None,
        redact: Redactor | None = None,
        sideband_cancel_clears_playout: bool = True,
    ) -> None:
        self.call_id = call_id
        #: A sideband's ``response.cancel`` also cuts the playout off (and truncates).
        self.sideband_cancel_clears_playout = sideband_cancel_clears_playout
        #: Masks the secrets sent upstream in whatever the upstream says (relay.protocol.redact).
        self._redact = redact or Redactor()
        self.log = CallLog(logger, call_id)
        #: Locked session fields the client may not change (relay.protocol.realtime.policy).
        self.policy: Policy = policy or {}
        self._clock = clock
        #: Each party's message size and rate (the client's channel, each sideband).
        self._parties = PartyGuards(client_limits, sideband_limits, clock)
        #: Set when a party floods the call: the driver ends the call with this reason.
        self.end_reason: str | None = None
        self.requested_session = session
        #: ``"realtime"`` (a voice conversation) or ``"transcription"`` (captions: the
        #: user is transcribed, nothing answers, no audio plays).
        self.session_type = session_type(session)
        #: The upstream opens a transcription session at ``?intent=transcription``.
        self.upstream_intent = TRANSCRIPTION if self.session_type == TRANSCRIPTION else None
        self.stats = CallStats()
        #: Event counts, error codes and reply latency (in :attr:`stats`).
        self.measures = self.stats.measures
        self._clock = clock
        self.playback = Playback(call_id, max_playout_samples=max_playout_samples, clock=clock,
                                 stats=self.stats, to_client=self._send_client,
                                 to_upstream=self._to_upstream_append)
        self.playout = self.playback.playout
        #: When the uplink audio arrived, by its position (for timing barge-ins).
        self.uplink_arrivals = UplinkArrivals()
        #: The upstream's effective session, from session.created/updated.
        self.session: Session = {}
        self._updates = SessionUpdates()
        #: What waits for the client's channel, each sideband and the upstream.
        self._outboxes = PartyOutboxes(self.stats)
        #: Client messages held until a controller configures the session.
        self._held = HeldMessages()
        #: The conversation as the upstream told it, to rebuild on a new upstream session.
        self.mirror = ConversationMirror()
        #: True from the upstream's loss until a new session is open.
        self.upstream_down = False
        #: Restores done, and the one under way: its event ids not yet answered, what it
        #: restores, and when the old session was lost.
        self.restores = 0
        self._restore_pending: dict[str, str | None] = {}
        self._restore_report: Event | None = None
        self._lost_at: float | None = None
        self._session_before_loss: Session = {}
        #: Item ids created by restores: their ``added``/``done`` echoes are not passed on.
        self._restored_ids: set[str] = set()
        #: The upstream said its session reached its longest duration (it closes next).
        self.upstream_expired = False

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Queue the initial ``session.update``: the call's session, formats pinned."""
        self._update_session(INITIAL, {"type": "session.update",
                                       "session": self.requested_session})

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio, 24 kHz mono PCM16, to append to the upstream's buffer
        (dropped while there is no upstream session: it would be stale by the restore)."""
        if self.upstream_down:
            self.stats.uplink_dropped_samples += len(pcm) // SAMPLE_BYTES
            return
        self.stats.uplink_samples += len(pcm) // SAMPLE_BYTES
        self.uplink_arrivals.arrived(self.stats.uplink_samples, self._clock())
        self._outboxes.to_upstream(audio_append("input_audio_buffer.append", b64(pcm)))

    def client_message(self, text: str | bytes, source: str = CLIENT) -> None:
        """One message from the data channel, or from the sideband ``source`` names."""
        if not self._admit(text, source):
            return
        if source == CLIENT and self._held.holding:
            self._hold(text)
            return
        try:
            event = parse_event(text)
        except InvalidRequest as exc:
            self._reply(source, error_event(exc))
            return
        self.measures.count("from_client" if source == CLIENT else "from_sideband",
                            event["type"])
        try:
            self._client_event(event, source)
        except RelayError as exc:
            event_id = event.get("event_id")
            self._reply(source, error_event(exc, event_id if isinstance(event_id, str) else None))

    def _admit(self, text: str | bytes, source: str) -> bool:
        """Check ``source``'s message against its size and rate; answer one that is not."""
        verdict = self._parties.check(text, source)
        if verdict.answer is not None:
            self._reply(source, error_event(verdict.answer))
        if verdict.flooding and self.end_reason is None:
            self.end_reason = f"{source} flooded the call"
            logger.warning("call %s: %s sent too many messages too fast; ending the call",
                           self.call_id, source)
        return verdict.admitted

    def hold_client_events(self) -> None:
        """A server-side agent will configure this call: hold the client's data-channel
        messages until a controller's first ``session.update`` has been sent upstream, or
        until :meth:`release_client_events`. The microphone audio is never held."""
        self._held.hold()

    def release_client_events(self) -> None:
        """Stop holding the client's messages and handle those held, in order (the agent
        failed or took too long: the call goes on without it). Safe to call twice."""
        for text in self._held.release():
            self.client_message(text)

    def relay_error(self, error: RelayError) -> None:
        """An error the relay met about the call itself (its agent failed): an ``error``
        server event for the client and every sideband."""
        self._send_client(error_event(error))

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream WebSocket."""
        if self._redact:
            text = self._redact(text)
        try:
            event = parse_event(text)
        except InvalidRequest:
            self.stats.bad_upstream_messages += 1
            return
        kind = event["type"]
        self.measures.count("from_upstream", kind)
        if kind == "response.output_audio.delta":
            self.playback.audio_delta(event)
            return
        self.mirror.observe(event)
        if self._restore_answer(event):
            return
        if kind in ("session.created", "session.updated", "error"):
            self._session_answer(event)
            return
        self._send_client(event)
        if kind == "response.created":
            self.playback.response_created(event)
        elif kind == "response.output_item.added":
            self.playback.item_added(event)
        elif kind == "response.done":
            self.playback.response_finished(event)
        elif kind == "input_audio_buffer.speech_started":
            if interrupt_response(self.session):
                self.playback.interrupt("speech_started", explicit=False,
                                        since=self._speech_onset(event))
        elif kind == "input_audio_buffer.speech_stopped":
            # The reply latency runs from here to the reply's first frame (Playback).
            self.measures.speech_stopped_at = self._clock()

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream WebSocket closed: tell the client why before the call ends."""
        reason = self._redact(reason)
        detail = f" ({code}{': ' + reason[:200] if reason else ''})" if code else ""
        self._send_client(
            error_event(RelayError(f"The upstream Realtime session closed{detail}.",
                                   code="upstream_closed"))
        )

    @property
    def idle(self) -> bool:
        """No reply in flight and no assistant audio waiting to be played."""
        return not self.playback.unfinished() and self.playout.queued == 0

    def upstream_lost(self, close_code: int | None) -> str | None:
        """The upstream session closed under the call with ``close_code`` (None: none
        received). When a new session is worth opening (see
        :func:`~.upstream_restore.worth_reopening`), return why the old one went and wait
        for :meth:`upstream_reopened`: meanwhile each reply in flight ends (its audio
        already queued still plays) with a ``response.done`` of status ``failed``, updates
        in flight get an ``error``, and the microphone's audio is dropped. Otherwise
        return None and change nothing (the call is to end)."""
        if self.upstream_down:
            return "upstream_closed"
        if not worth_reopening(close_code, self.upstream_expired):
            return None
        self.upstream_down = True
        self._lost_at = self._clock()
        self._session_before_loss = dict(self.session or self.requested_session)
        for response_id in self.playback.unfinished():
            self._send_client(_lost_response(response_id))
            self.playback.response_finished({"response": {"id": response_id}})
        while (pending := self._updates.answered()) is not None:
            if pending.source not in (INITIAL, RESTORE):
                self._reply(pending.source, error_event(RelayError(
                    "The upstream session was lost before it answered this update; the "
                    "relay is opening a new one: send it again.",
                    code="upstream_session_lost"), pending.own_id))
        # What was queued for the old session is stale, the microphone's audio above all.
        self._outboxes.drop_upstream("input_audio_buffer.append")
        if self.upstream_expired:
            return "session_expired"
        return f"upstream_closed ({close_code})" if close_code else "upstream_closed"

    def upstream_reopened(self, reason: str) -> None:
        """A new upstream session is open in place of the lost one: queue the events that
        rebuild it (the session's configuration, then its conversation) ahead of anything
        else, and report once it has taken them (``reason``: why the old one went)."""
        self.upstream_down = False
        self.upstream_expired = False
        self.restores += 1
        self.stats.upstream_restores = self.restores
        plan = restore_items(self.mirror, self.restores)
        update = self._updates.send(RESTORE, {
            "type": "session.update",
            "event_id": f"{RESTORE_PREFIX}{self.restores}_session",
            "session": _pinned(restorable_session(self._session_before_loss)),
        })
        self._restored_ids.update(plan.item_ids)
        self._restore_pending = {update["event_id"]: None,
                                 **{e["event_id"]: e["item"]["id"] for e in plan.events}}
        lost_for = None if self._lost_at is None else self._clock() - self._lost_at
        self._restore_report = {
            "type": RESTORED_EVENT, "event_id": new_event_id(), "reason": reason,
            "items_restored": list(plan.item_ids), "items_lost": list(plan.lost_item_ids),
            "items_failed": [],
            "seconds_without_upstream": None if lost_for is None else round(lost_for, 3),
            "uplink_ms_dropped": self.stats.uplink_dropped_samples * 1000 // RATE,
        }
        self._outboxes.upstream_first([update, *plan.events])

    def _restore_answer(self, event: Event) -> bool:
        """Take the new session's answers to a restore (True: not to be passed on)."""
        kind = event["type"]
        if kind == "error":
            body = event.get("error")
            body = body if isinstance(body, dict) else {}
            event_id = body.get("event_id")
            if body.get("code") == SESSION_EXPIRED:
                # Its session closes next and the relay rolls over: the client is told
                # once the new session has the conversation.
                self.upstream_expired = True
                return True
            if isinstance(event_id, str) and event_id in self._restore_pending:
                item_id = self._restore_pending[event_id]
                if item_id is None:
                    return False  # the session update's: SessionUpdates routes it
                self.log.warning("restoring the upstream session: item %s was refused: %s",
                                 item_id, body.get("message"))
                if self._restore_report is not None:
                    self._restore_report["items_failed"].append(item_id)
                self._restore_acked(event_id)
                return True
        elif kind == "session.created":
            return self.restores > 0  # a new session's defaults; the restore's update follows
        elif kind in ("conversation.item.added", "conversation.item.created",
                      "conversation.item.done"):
            item = event.get("item")
            item_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(item_id, str) and item_id in self._restored_ids:
                for event_id, pending in list(self._restore_pending.items()):
                    if pending == item_id:
                        self._restore_acked(event_id)
                return True
        return False

    def _restore_acked(self, event_id: str) -> None:
        self._restore_pending.pop(event_id, None)
        if not self._restore_pending and self._restore_report is not None:
            report, self._restore_report = self._restore_report, None
            self.log.info("upstream session restored: %d items, %d lost, %d refused",
                          len(report["items_restored"]), len(report["items_lost"]),
                          len(report["items_failed"]))
            self._send_client(report)

    def next_frame(self) -> bytes:
        """The next 20 ms of audio for the peer (silence when there is none)."""
        return self.playback.next_frame()

    # ---------------------------------------------------------------- internals

    def _client_event(self, event: Event, source: str) -> None:
        kind = event["type"]
        check_supported(kind, self.session_type)
        if kind == "output_audio_buffer.clear":
            self.playback.interrupt("client_clear", explicit=True, since=self._clock())
        elif kind == "conversation.item.truncate":
            self._client_truncate(event, source)
        elif (kind == "response.cancel" and source != CLIENT
              and self.sideband_cancel_clears_playout):
            # A controller's cancel (a tripped guardrail) means "stop talking": the reply
            # already queued would otherwise play on for seconds. The cancel goes first,
            # then the relay cuts playout and truncates at what the peer was sent, as a
            # client's output_audio_buffer.clear would. (A client's own cancel is left
            # alone: clients send output_audio_buffer.clear after it when they mean that.)
            self._forward(event, source)
            self.playback.interrupt(f"{source}_cancel", explicit=False, since=self._clock())
        elif kind == "input_audio_buffer.append" and source == CLIENT:
            raise InvalidRequest(
                "In a WebRTC call the microphone audio travels on the RTP track; "
                "input_audio_buffer.append is not accepted on the data channel.",
                code="invalid_value", param="type",
            )
        elif kind == "session.update":
            session = requested_update(event, self.session_type, "call")  # formats pinned later
            if source == CLIENT:
                check_session(session, self.policy, "session")
            self._update_session(source, {**event, "session": session})
        elif kind == "response.create" and source == CLIENT:
            check_response_overrides(event, self.policy)
            self._forward(event, source)
        else:
            self._forward(event, source)

    def _speech_onset(self, event: Event) -> float | None:
        """When the audio at a ``speech_started``'s onset reached the relay (None: unknown).

        Its ``audio_start_ms`` includes the VAD's prefix padding; the user started
        talking that much later. (An upstream that clamps the padding, at the end of the
        previous turn, places the onset a little late: the latency is then understated.)
        """
        start_ms = event.get("audio_start_ms")
        if type(start_ms) is not int or start_ms < 0:
            return None
        onset_ms = start_ms + speech_padding_ms(self.session)
        return self.uplink_arrivals.time_of(onset_ms * (RATE // 1000))

    def _forward(self, event: Event, source: str) -> None:
        self._outboxes.sent_by(event.get("event_id"), source)
        self._outboxes.to_upstream(event)

    def _client_truncate(self, event: Event, source: str) -> None:
        """The relay owns playout, so only it knows what was heard: a truncation of an
        item it played is its own to make (controllers estimating from wall-clock time or
        from deltas they never saw would overshoot). One it already made is dropped; one
        of an item still playing cuts playout there, as ``output_audio_buffer.clear``
        would, and the relay sends the exact truncation. Other items' go through."""
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise InvalidRequest("conversation.item.truncate needs an item_id string.",
                                 code="invalid_type", param="item_id")
        if self.playback.truncated(item_id):
            self.log.info("%s's truncation of %s dropped: the relay truncated it", source, item_id)
        elif self.playback.owns(item_id):
            self.playback.interrupt(f"{source}_truncate", explicit=False, since=self._clock())
        else:
            self._forward(event, source)

    def _update_session(self, source: str, event: Event) -> None:
        """Send ``source``'s ``session.update`` upstream, formats pinned and the model left
        to the connection (the upstream chose it when the call connected)."""
        session = pin_relay_formats(event["session"])
        session.pop("model", None)
        # A tool's credentials go upstream; should the upstream echo one, it is masked.
        self._redact = self._redact.with_secrets(tool_secret_values(session))
        self._outboxes.to_upstream(self._updates.send(source, {**event, "session": session}))
        if source not in (CLIENT, INITIAL):
            # A controller has configured the call: what the client held back may follow.
            self.release_client_events()

    def _hold(self, text: str | bytes) -> None:
        if not self._held.add(text):
            self._outboxes.to_client(error_event(InvalidRequest(
                "Too many events before the call's agent configured the session; "
                "this one was dropped.", code="too_many_events")))

    def _session_answer(self, event: Event) -> None:
        """Route ``session.created``/``session.updated``/``error`` to whoever asked."""
        kind = event["type"]
        if kind == "error":
            pending = self._updates.failed(event)
            if pending is not None:
                self._update_failed(pending, event)
            else:
                self._send_client_error(event)
            return
        session = event.get("session")
        if isinstance(session, dict):
            self.session = session
            # What clients read of the session never holds a tool's credentials.
            event = {**event, "session": conceal_tool_secrets(session)}
        if kind == "session.created":
            return  # the upstream's defaults: the client's session.created comes later
        pending = self._updates.answered()
        if pending is None:
            self.log.debug("unasked session.updated not passed on")
        elif pending.source == RESTORE:
            self._restore_acked(pending.sent_id)
        elif pending.source == INITIAL:
            self._greet({**event, "type": "session.created"})
        else:
            # Everyone shares the session: the client and every sideband see the change.
            self._send_client(event)

    def _send_client_error(self, error: Event) -> None:
        """An upstream error about a sideband's event goes to that sideband; any other
        is the call's, and everyone sees it."""
        body = error.get("error")
        sideband = self._outboxes.sender(body.get("event_id") if isinstance(body, dict) else None)
        if sideband is not None:
            self._reply(sideband, error)
        else:
            self._send_client(error)

    def _update_failed(self, pending: PendingUpdate, error: Event) -> None:
        if pending.source == RESTORE:
            # The old configuration no longer fits (the upstream changed?): the session
            # goes on as the upstream made it, and everyone hears why.
            self._send_client(error)
            self._restore_acked(pending.sent_id)
            return
        body = dict(error["error"])
        body["event_id"] = pending.own_id
        self._reply(pending.source, {**error, "error": body})
        if pending.source == INITIAL:
            # The call's configuration was refused: the session is what the upstream made.
            self._greet({"type": "session.created", "event_id": new_event_id(),
                         "session": conceal_tool_secrets(self.session)})

    def _greet(self, created: Event) -> None:
        """The client's ``session.created``, then the relay's notices held for after it."""
        self._outboxes.to_client(created)
        self._outboxes.greeted()

    def _to_upstream_append(self, event: Event) -> None:
        if self.upstream_down and event["type"] in ("conversation.item.truncate",
                                                    "conversation.item.delete"):
            # A barge-in on a lost session's reply: the restore carries the item whole
            # (the relay cannot tell the new session which part was heard).
            return
        self._outboxes.to_upstream(event)

    def _send_client(self, event: Event) -> None:
        """A server event of the call: to the client and to every sideband."""
        self._outboxes.broadcast(event)

    def _reply(self, source: str, event: Event) -> None:
        """An event for whoever sent a client event: the data channel (the relay's own
        first update answers there too) or one sideband."""
        self._outboxes.reply(CLIENT if source == INITIAL else source, event)


def _pinned(session: Session) -> Session:
    session = pin_relay_formats(session)
    session.pop("model", None)
    return session


def _lost_response(response_id: str) -> Event:
    """The ``response.done`` that ends a reply cut off by the loss of its upstream session."""
    return {
        "type": "response.done", "event_id": new_event_id(),
        "response": {
            "object": "realtime.response", "id": response_id, "status": "failed",
            "status_details": {"type": "failed", "error": {
                "type": "server_error", "code": "upstream_session_lost",
                "message": "The upstream session closed during this response."}},
            "output": [],
        },
    }
