"""One call's protocol state machine, without I/O.

The driver feeds it what arrives — upstream events, data-channel messages, uplink audio,
the data channel opening — and pulls 20 ms frames of assistant audio from it on the
outbound track's clock. After each feed it drains two lists: events for the client's
``oai-events`` channel and events for the upstream Realtime WebSocket.

Everything about the protocol is decided here: which events go where, the
``output_audio_buffer.*`` events only WebRTC has, and barge-in — cutting playout off
and telling the upstream exactly how much of each item the user heard.

The client's story of its session is the hosted endpoint's: its first event is a
``session.created`` that describes the call's effective session (the relay's first
``session.update`` applied: the upstream's own ``session.created``, with its defaults, is
not passed on), and each ``session.updated`` it gets answers one of its own updates
(:mod:`relay.protocol.updates` pairs answers with askers).

A call served by a server-side agent holds the client's data-channel events (never its
audio) until a controller's first ``session.update`` has gone upstream, so that what the
client says first reaches a model the agent has already configured (its tools above all).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..audio import RATE, SAMPLE_BYTES
from ..audio.playout import ItemPlayback, Playout
from ..errors import InvalidRequest, RelayError
from .channel import DEFAULT_MAX_MESSAGE_SIZE, channel_message
from .events import Event, error_event, new_event_id, parse_event
from .session import Session, interrupt_response, normalize_session, pin_relay_formats
from .updates import CLIENT, INITIAL, PendingUpdate, SessionUpdates

logger = logging.getLogger(__name__)

#: Events held for a client whose data channel is not open yet (older ones are dropped),
#: and client messages held for the call's agent (newer ones are refused).
MAX_HELD_EVENTS = 10_000
#: Sideband event ids remembered for routing upstream errors back to their sender.
MAX_TRACKED_EVENTS = 1024
_SAMPLES_PER_MS = RATE // 1000


@dataclass
class ResponsePlayback:
    """Playout state of one response's audio."""

    response_id: str
    items: list[ItemPlayback] = field(default_factory=list)
    #: ``output_audio_buffer.started`` has been sent.
    started: bool = False
    #: ``response.done`` has arrived: no more audio will come for it.
    done: bool = False

    @property
    def queued(self) -> int:
        """Samples of this response still waiting to be sent."""
        return sum(item.queued for item in self.items)

    @property
    def received(self) -> int:
        """Samples of this response accepted into the buffer."""
        return sum(item.received for item in self.items)


@dataclass
class Truncation:
    """What one barge-in told the upstream."""

    reason: str
    at: float
    response_ids: list[str]
    #: ``(item_id, audio_end_ms)`` sent as ``conversation.item.truncate``.
    truncated: list[tuple[str, int]] = field(default_factory=list)
    #: Items deleted because none of their audio had been played.
    deleted: list[str] = field(default_factory=list)
    #: Clock time of the last frame of reply audio sent, minus ``at`` (ms).
    cut_latency_ms: float | None = None


@dataclass
class CallStats:
    """Counters the logs and the benchmark read."""

    uplink_samples: int = 0
    frames_out: int = 0
    audio_frames_out: int = 0
    dropped_deltas: int = 0
    held_dropped: int = 0
    bad_upstream_messages: int = 0
    barge_ins: list[Truncation] = field(default_factory=list)


class CallCore:
    """The protocol of one call, fed and drained by its driver."""

    def __init__(
        self,
        call_id: str,
        session: Session,
        *,
        max_playout_samples: int,
        clock: Callable[[], float],
    ) -> None:
        self.call_id = call_id
        self.requested_session = session
        self.playout = Playout(max_playout_samples)
        self.stats = CallStats()
        self._clock = clock
        #: The upstream's effective session, from session.created/updated.
        self.session: Session = {}
        self._updates = SessionUpdates()
        self._to_client: deque[Event] = deque()
        #: Outboxes of the sidebands attached, by name.
        self._sidebands: dict[str, list[Event]] = {}
        #: event_id → sideband, of the sidebands' events sent upstream (newest last): an
        #: upstream error naming one goes back to that sideband only.
        self._sideband_events: OrderedDict[str, str] = OrderedDict()
        #: Assistant items the relay truncated or deleted itself (see _client_truncate).
        self._truncated: deque[str] = deque(maxlen=256)
        self._to_upstream: list[Event] = []
        self._channel_open = False
        self._max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self._responses: dict[str, ResponsePlayback] = {}
        self._items: dict[str, ItemPlayback] = {}
        #: Responses cut off by barge-in: their late deltas are dropped, never played.
        self._cut: deque[str] = deque(maxlen=64)
        self._last_response_id: str | None = None
        self._last_audio_at: float | None = None
        #: Client messages held until a controller configures the session (None: not held).
        self._held_from_client: list[str | bytes] | None = None

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        """Queue the initial ``session.update``: the call's session, formats pinned."""
        self._update_session(INITIAL, {"type": "session.update",
                                       "session": self.requested_session})

    def channel_opened(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """The client's ``oai-events`` channel is open and takes messages of up to
        ``max_message_size`` bytes (0: any size): held events may flow."""
        self._channel_open = True
        self._max_message_size = max_message_size

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio, 24 kHz mono PCM16, to append to the upstream's buffer."""
        self.stats.uplink_samples += len(pcm) // SAMPLE_BYTES
        self._to_upstream.append(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
        )

    def client_message(self, text: str | bytes, source: str = CLIENT) -> None:
        """One message from the data channel, or from the sideband ``source`` names."""
        if source == CLIENT and self._held_from_client is not None:
            self._hold(text)
            return
        try:
            event = parse_event(text)
        except InvalidRequest as exc:
            self._reply(source, error_event(exc))
            return
        try:
            self._client_event(event, source)
        except RelayError as exc:
            event_id = event.get("event_id")
            self._reply(source, error_event(exc, event_id if isinstance(event_id, str) else None))

    def hold_client_events(self) -> None:
        """A server-side agent will configure this call: hold the client's data-channel
        messages until a controller's first ``session.update`` has been sent upstream, or
        until :meth:`release_client_events`. The microphone audio is never held."""
        if self._held_from_client is None:
            self._held_from_client = []

    def release_client_events(self) -> None:
        """Stop holding the client's messages and handle those held, in order (the agent
        failed or took too long: the call goes on without it). Safe to call twice."""
        held, self._held_from_client = self._held_from_client, None
        for text in held or ():
            self.client_message(text)

    def relay_error(self, error: RelayError) -> None:
        """An error the relay met about the call itself (its agent failed): an ``error``
        server event for the client and every sideband."""
        self._send_client(error_event(error))

    def attach_sideband(self, name: str) -> None:
        """A server-side controller joined the call as ``name``: from now on it gets every
        event the client gets, except ``session.created`` (it gets no greeting)."""
        self._sidebands[name] = []

    def detach_sideband(self, name: str) -> None:
        """The sideband ``name`` left; what was queued for it is dropped."""
        self._sidebands.pop(name, None)

    def drain_sideband(self, name: str) -> list[Event]:
        """Events for the sideband ``name``."""
        events = self._sidebands.get(name)
        if not events:
            return []
        self._sidebands[name] = []
        return events

    def upstream_message(self, text: str | bytes) -> None:
        """One message from the upstream WebSocket."""
        try:
            event = parse_event(text)
        except InvalidRequest:
            self.stats.bad_upstream_messages += 1
            return
        kind = event["type"]
        if kind == "response.output_audio.delta":
            self._audio_delta(event)
            return
        if kind in ("session.created", "session.updated", "error"):
            self._session_answer(event)
            return
        self._send_client(event)
        if kind == "response.created":
            response_id = (event.get("response") or {}).get("id")
            if isinstance(response_id, str) and response_id not in self._cut:
                self._response(response_id)
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            response_id = event.get("response_id")
            if (item.get("type") == "message" and isinstance(item.get("id"), str)
                    and isinstance(response_id, str) and response_id not in self._cut):
                self._item(response_id, item["id"])
        elif kind == "response.done":
            response_id = (event.get("response") or {}).get("id")
            if isinstance(response_id, str):
                self._response_done(response_id)
        elif kind == "input_audio_buffer.speech_started":
            if interrupt_response(self.session):
                self._interrupt("speech_started", explicit=False)

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream WebSocket closed: tell the client why before the call ends."""
        detail = f" ({code}{': ' + reason[:200] if reason else ''})" if code else ""
        self._send_client(
            error_event(RelayError(f"The upstream Realtime session closed{detail}.",
                                   code="upstream_closed"))
        )

    def next_frame(self) -> bytes:
        """The next 20 ms of audio for the peer (silence when there is none)."""
        pcm, touched = self.playout.pull()
        self.stats.frames_out += 1
        if touched:
            self.stats.audio_frames_out += 1
            self._last_audio_at = self._clock()
        for item in touched:
            response = self._responses.get(item.response_id)
            if response is None:
                continue
            if not response.started:
                response.started = True
                self._send_client(self._buffer_event("output_audio_buffer.started", response))
            if response.done and response.queued == 0:
                self._finish(response, "output_audio_buffer.stopped")
        return pcm

    # ----------------------------------------------------------------- outputs

    def drain_client(self) -> list[Event]:
        """Events for the data channel; none until it has opened."""
        if not self._channel_open or not self._to_client:
            return []
        events = list(self._to_client)
        self._to_client.clear()
        return events

    def drain_client_messages(self) -> list[str]:
        """:meth:`drain_client`, encoded to fit the channel's message size (see
        :mod:`relay.protocol.channel` for what replaces an event too large for it)."""
        return [channel_message(event, self._max_message_size) for event in self.drain_client()]

    @property
    def upstream_pending(self) -> bool:
        """Whether :meth:`drain_upstream` has anything (so a writer need not wake for nothing)."""
        return bool(self._to_upstream)

    def drain_upstream(self) -> list[Event]:
        """Events for the upstream WebSocket."""
        events, self._to_upstream = self._to_upstream, []
        return events

    # ---------------------------------------------------------------- internals

    def _client_event(self, event: Event, source: str) -> None:
        kind = event["type"]
        if kind == "output_audio_buffer.clear":
            self._interrupt("client_clear", explicit=True)
        elif kind == "conversation.item.truncate":
            self._client_truncate(event, source)
        elif kind == "input_audio_buffer.append" and source == CLIENT:
            raise InvalidRequest(
                "In a WebRTC call the microphone audio travels on the RTP track; "
                "input_audio_buffer.append is not accepted on the data channel.",
                code="invalid_value", param="type",
            )
        elif kind == "session.update":
            session = event.get("session")
            if not isinstance(session, dict):
                raise InvalidRequest("session.update needs a 'session' object",
                                     code="missing_required_parameter", param="session")
            # Partial updates are normal: fill the required type (formats are pinned later).
            session = normalize_session({"type": "realtime", **session})
            self._update_session(source, {**event, "session": session})
        else:
            self._forward(event, source)

    def _forward(self, event: Event, source: str) -> None:
        event_id = event.get("event_id")
        if source != CLIENT and isinstance(event_id, str):
            self._sideband_events[event_id] = source
            if len(self._sideband_events) > MAX_TRACKED_EVENTS:
                self._sideband_events.popitem(last=False)
        self._to_upstream.append(event)

    def _client_truncate(self, event: Event, source: str) -> None:
        """The relay owns playout, so only it knows what was heard: a truncation of an
        item it played is its own to make (controllers estimating from wall-clock time or
        from deltas they never saw would overshoot). One it already made is dropped; one
        of an item still playing cuts playout there, as ``output_audio_buffer.clear``
        would, and the relay sends the exact truncation. Other items' go through."""
        item_id = event.get("item_id")
        if item_id in self._truncated:
            logger.info("call %s: %s's truncation of %s dropped: the relay truncated it",
                        self.call_id, source, item_id)
        elif item_id in self._items:
            self._interrupt(f"{source}_truncate", explicit=False)
        else:
            self._forward(event, source)

    def _update_session(self, source: str, event: Event) -> None:
        """Send ``source``'s ``session.update`` upstream, formats pinned and the model left
        to the connection (the upstream chose it when the call connected)."""
        session = pin_relay_formats(event["session"])
        session.pop("model", None)
        self._to_upstream.append(self._updates.send(source, {**event, "session": session}))
        if source not in (CLIENT, INITIAL):
            # A controller has configured the call: what the client held back may follow.
            self.release_client_events()

    def _hold(self, text: str | bytes) -> None:
        assert self._held_from_client is not None
        if len(self._held_from_client) >= MAX_HELD_EVENTS:
            self._to_channel(error_event(InvalidRequest(
                "Too many events before the call's agent configured the session; "
                "this one was dropped.", code="too_many_events")))
            return
        self._held_from_client.append(text)

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
        if kind == "session.created":
            return  # the upstream's defaults: the client's session.created comes later
        pending = self._updates.answered()
        if pending is None:
            logger.debug("call %s: unasked session.updated not passed on", self.call_id)
        elif pending.source == INITIAL:
            self._to_channel({**event, "type": "session.created"})
        else:
            # Everyone shares the session: the client and every sideband see the change.
            self._send_client(event)

    def _send_client_error(self, error: Event) -> None:
        """An upstream error about a sideband's event goes to that sideband; any other
        is the call's, and everyone sees it."""
        body = error.get("error")
        event_id = body.get("event_id") if isinstance(body, dict) else None
        sideband = self._sideband_events.pop(event_id, None) if isinstance(event_id, str) else None
        if sideband is not None:
            self._reply(sideband, error)
        else:
            self._send_client(error)

    def _update_failed(self, pending: PendingUpdate, error: Event) -> None:
        body = dict(error["error"])
        body["event_id"] = pending.own_id
        self._reply(pending.source, {**error, "error": body})
        if pending.source == INITIAL:
            # The call's configuration was refused: the session is what the upstream made.
            self._to_channel({"type": "session.created", "event_id": new_event_id(),
                              "session": self.session})

    def _audio_delta(self, event: Event) -> None:
        response_id = event.get("response_id")
        item_id = event.get("item_id")
        if not isinstance(response_id, str) or not isinstance(item_id, str):
            self.stats.bad_upstream_messages += 1
            return
        if response_id in self._cut:
            self.stats.dropped_deltas += 1
            return
        try:
            pcm = base64.b64decode(event.get("delta") or "", validate=True)
        except (binascii.Error, ValueError):
            self.stats.bad_upstream_messages += 1
            return
        item = self._item(response_id, item_id)
        already_dropping = item.dropped > 0
        self.playout.push(item, pcm)
        if item.dropped and not already_dropping:  # once per item, not per delta
            logger.warning("call %s: playout buffer full, dropping audio of %s",
                           self.call_id, item_id)

    def _response(self, response_id: str) -> ResponsePlayback:
        response = self._responses.get(response_id)
        if response is None:
            response = self._responses[response_id] = ResponsePlayback(response_id)
            self._last_response_id = response_id
        return response

    def _item(self, response_id: str, item_id: str) -> ItemPlayback:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = ItemPlayback(item_id, response_id)
            self._response(response_id).items.append(item)
        return item

    def _response_done(self, response_id: str) -> None:
        response = self._responses.get(response_id)
        if response is None:
            return
        response.done = True
        if response.queued == 0:
            if response.started:
                self._finish(response, "output_audio_buffer.stopped")
            elif response.received == 0:
                self._forget(response)

    def _interrupt(self, reason: str, *, explicit: bool) -> None:
        """Flush playout and tell the upstream what the user actually heard."""
        now = self._clock()
        cut = [r for r in self._responses.values() if r.received or not r.done]
        record = Truncation(reason, now, [r.response_id for r in cut])
        self.playout.discard({r.response_id for r in cut})
        for response in cut:
            self._cut.append(response.response_id)
            for item in response.items:
                self._truncate(item, record)
            if response.received:
                self._finish(response, "output_audio_buffer.cleared")
            else:
                self._forget(response)
        if explicit and not any(r.received for r in cut):
            # The client asked to clear: answer even when nothing was playing.
            self._send_client({"type": "output_audio_buffer.cleared", "event_id": new_event_id(),
                               "response_id": self._last_response_id})
        if cut:
            if self._last_audio_at is not None:
                record.cut_latency_ms = max(0.0, (self._last_audio_at - now) * 1000)
            self.stats.barge_ins.append(record)
            logger.info("call %s: barge-in (%s): truncated %s, deleted %s", self.call_id,
                        reason, record.truncated, record.deleted)

    def _truncate(self, item: ItemPlayback, record: Truncation) -> None:
        # Floor to whole ms: never claim more than was sent (nor, so, received).
        audio_end_ms = item.sent // _SAMPLES_PER_MS
        if audio_end_ms > 0:
            self._to_upstream.append({"type": "conversation.item.truncate",
                                      "item_id": item.item_id, "content_index": 0,
                                      "audio_end_ms": audio_end_ms})
            record.truncated.append((item.item_id, audio_end_ms))
            self._truncated.append(item.item_id)
        else:
            # The upstream rejects a truncation at 0 ms; nothing was heard, so drop it.
            self._to_upstream.append({"type": "conversation.item.delete",
                                      "item_id": item.item_id})
            record.deleted.append(item.item_id)
            self._truncated.append(item.item_id)

    def _finish(self, response: ResponsePlayback, kind: str) -> None:
        self._send_client(self._buffer_event(kind, response))
        self._forget(response)

    def _forget(self, response: ResponsePlayback) -> None:
        self._responses.pop(response.response_id, None)
        for item in response.items:
            self._items.pop(item.item_id, None)

    def _buffer_event(self, kind: str, response: ResponsePlayback) -> Event:
        return {"type": kind, "event_id": new_event_id(), "response_id": response.response_id}

    def _send_client(self, event: Event) -> None:
        """A server event of the call: to the client and to every sideband."""
        self._to_channel(event)
        for outbox in self._sidebands.values():
            outbox.append(event)

    def _reply(self, source: str, event: Event) -> None:
        """An event for whoever sent a client event: the data channel or one sideband."""
        if source in (CLIENT, INITIAL):
            self._to_channel(event)
        elif source in self._sidebands:
            self._sidebands[source].append(event)

    def _to_channel(self, event: Event) -> None:
        if not self._channel_open and len(self._to_client) >= MAX_HELD_EVENTS:
            self._to_client.popleft()
            self.stats.held_dropped += 1
        self._to_client.append(event)
