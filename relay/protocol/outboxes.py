"""What waits to go to each party of one call or session: the client's channel, each
sideband, and the upstream; what a family's core queues there and its driver drains.

Every protocol family's core (a Realtime call, a GPT-Live session, a Realtime WebSocket
session) routes events the same way, so the routing lives here once:

- the client's channel holds its events until it opens (at most :data:`MAX_HELD_EVENTS`,
  the oldest dropped first), and its driver drains them encoded to fit the channel
  (:mod:`.channel`); the relay's own notices wait for the family's greeting (the channel's
  first event), and a resumed call's notice goes ahead of everything held;
- each sideband, from the moment it attaches, gets the call's server events and the
  answers to its own commands; an upstream error naming one of its commands goes back to
  it alone (:meth:`PartyOutboxes.sent_by`, :meth:`PartyOutboxes.sender`);
- the upstream gets the events in the order they were queued.

Everything is counted in the call's :class:`~.call_measures.CallMeasures` as it is queued
(the upstream's as it is drained). Sans-I/O: no clock, no event loop.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from .call_measures import CallStats
from .call_protocol import RESUMED_EVENT
from .channel import DEFAULT_MAX_MESSAGE_SIZE, channel_message
from .events import Event, new_event_id
from .flood import CLIENT, PartyGuards

#: Events held for a client whose channel is not open yet (older ones are dropped), and
#: client messages held for the call's agent.
MAX_HELD_EVENTS = 10_000
#: Sideband event ids remembered for routing upstream errors back to their sender.
MAX_TRACKED_EVENTS = 1024


class PartyOutboxes:
    """The outboxes of one call's parties: the client's channel (:data:`CLIENT`), each
    sideband (by its name) and the upstream."""

    def __init__(self, stats: CallStats, *, channel_open: bool = False,
                 uncounted_upstream: Iterable[str] = ()) -> None:
        """``stats``: the call's counters. ``channel_open``: the client's channel is open
        from the start (a WebSocket session's). ``uncounted_upstream``: event types not
        counted on their way upstream (audio a family counts in samples)."""
        self._stats = stats
        self._measures = stats.measures
        self._uncounted_upstream = frozenset(uncounted_upstream)
        self._to_client: deque[Event] = deque()
        self._channel_open = channel_open
        self._max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        #: The relay's notices held until the greeting has gone (None: it has).
        self._after_greeting: list[Event] | None = []
        self._sidebands: dict[str, list[Event]] = {}
        #: event_id → sideband, of the sidebands' events sent upstream (newest last).
        self._senders: OrderedDict[str, str] = OrderedDict()
        self._to_upstream: list[Event] = []

    # ------------------------------------------------------------ the client

    def channel_opened(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """The client's channel is open for messages of up to ``max_message_size`` bytes
        (0: any size): held events may flow."""
        self._channel_open = True
        self._max_message_size = max_message_size

    def channel_closed(self) -> None:
        """The client's channel went with its peer connection: hold its events again."""
        self._channel_open = False

    @property
    def client_held(self) -> int:
        """Events waiting for the client's channel."""
        return len(self._to_client)

    def to_client(self, event: Event) -> None:
        """An event for the client's channel alone (held, at most :data:`MAX_HELD_EVENTS`,
        while it is closed: the oldest go first)."""
        if not self._channel_open and len(self._to_client) >= MAX_HELD_EVENTS:
            self._to_client.popleft()
            self._stats.held_dropped += 1
        kind = event["type"]
        self._measures.count("to_client", kind)
        if kind == "error":
            self._measures.error(event.get("error"))
        self._to_client.append(event)

    def notify_client(self, event: Event) -> None:
        """An event of the relay's own for the client's channel alone: right after the
        greeting (see :meth:`greeted`), or at once if that has gone."""
        if self._after_greeting is None:
            self.to_client(event)
        else:
            self._after_greeting.append(event)

    def greeted(self) -> None:
        """The family's greeting (the channel's first event) is queued: the notices held
        for after it follow, and later ones go at once."""
        notices, self._after_greeting = self._after_greeting or [], None
        for notice in notices:
            self.to_client(notice)

    def resumed(self, details: Mapping[str, Any]) -> None:
        """The call resumed on a new peer connection: a ``relay.call.resumed`` with
        ``details`` goes first on the client's new channel, ahead of the events held
        meanwhile (it says how many), and to every sideband."""
        self.resumed_with({"type": RESUMED_EVENT, "event_id": new_event_id(), **details,
                           "events_held": len(self._to_client)})

    def resumed_with(self, notice: Event) -> None:
        """The call resumed on a new peer connection, and ``notice`` (in its family's
        shape: a GPT-Live session says it with an ``info`` event) says so: it goes first on
        the client's new channel, ahead of the events held meanwhile, and to every
        sideband; counted once, as sent to the client."""
        self._measures.count("to_client", notice["type"])
        self._to_client.appendleft(notice)
        self.reflect(notice)

    def drain_client(self) -> list[Event]:
        """The events for the client's channel; none until it has opened."""
        if not self._channel_open or not self._to_client:
            return []
        events = list(self._to_client)
        self._to_client.clear()
        return events

    def drain_client_messages(self) -> list[str]:
        """:meth:`drain_client`, encoded to fit the channel's message size (see
        :mod:`relay.protocol.channel` for what replaces an event too large for it)."""
        return [channel_message(event, self._max_message_size) for event in self.drain_client()]

    # ------------------------------------------------------------- sidebands

    def attach(self, name: str) -> None:
        """The sideband ``name`` joined: it gets the call's events from now on."""
        self._sidebands[name] = []

    def detach(self, name: str) -> None:
        """The sideband ``name`` left; what was queued for it is dropped."""
        self._sidebands.pop(name, None)

    @property
    def has_sidebands(self) -> bool:
        """Whether any sideband is attached."""
        return bool(self._sidebands)

    def drain_sideband(self, name: str) -> list[Event]:
        """The events for the sideband ``name``."""
        events = self._sidebands.get(name)
        if not events:
            return []
        self._sidebands[name] = []
        return events

    def reflect(self, event: Event) -> None:
        """``event`` for every sideband, not counted as an event sent (media reflected to
        them, or the relay's notice of a resume, counted where it was made)."""
        for outbox in self._sidebands.values():
            outbox.append(event)

    # ------------------------------------------------------------ everyone

    def broadcast(self, event: Event, *, to_client: bool = True) -> None:
        """A server event of the call: for every sideband, and for the client's channel
        unless ``to_client`` is False (its permissions exclude it)."""
        if to_client:
            self.to_client(event)
        for outbox in self._sidebands.values():
            self._measures.count("to_sideband", event["type"])
            outbox.append(event)

    def reply(self, source: str, event: Event) -> None:
        """An answer for the party ``source`` names: the client (:data:`CLIENT`) or one
        sideband (dropped if it has left)."""
        if source == CLIENT:
            self.to_client(event)
            return
        outbox = self._sidebands.get(source)
        if outbox is None:
            return
        kind = event["type"]
        self._measures.count("to_sideband", kind)
        if kind == "error":
            self._measures.error(event.get("error"))
        outbox.append(event)

    def sent_by(self, event_id: object, source: str) -> None:
        """The party ``source`` sent the upstream a command with ``event_id``: remember a
        sideband's (the newest :data:`MAX_TRACKED_EVENTS`), so an error naming it goes
        back to that sideband alone."""
        if source == CLIENT or not isinstance(event_id, str):
            return
        self._senders[event_id] = source
        while len(self._senders) > MAX_TRACKED_EVENTS:
            self._senders.popitem(last=False)

    def sender(self, event_id: object) -> str | None:
        """The sideband that sent the command ``event_id`` names (forgotten now), or None:
        the client's, or nobody's the relay remembers."""
        return self._senders.pop(event_id, None) if isinstance(event_id, str) else None

    # ------------------------------------------------------------ the upstream

    def to_upstream(self, event: Event) -> None:
        """An event for the upstream, after those queued."""
        self._to_upstream.append(event)

    def upstream_first(self, events: Iterable[Event]) -> None:
        """Events for the upstream ahead of all those queued."""
        self._to_upstream[:0] = events

    def drop_upstream(self, kind: str) -> None:
        """Forget the queued upstream events of type ``kind`` (stale ones)."""
        self._to_upstream = [e for e in self._to_upstream if e["type"] != kind]

    @property
    def upstream_pending(self) -> bool:
        """Whether :meth:`drain_upstream` has anything (so a writer need not wake for
        nothing)."""
        return bool(self._to_upstream)

    def drain_upstream(self) -> list[Event]:
        """The events for the upstream, counted as they go."""
        events, self._to_upstream = self._to_upstream, []
        for event in events:
            if event["type"] not in self._uncounted_upstream:
                self._measures.count("to_upstream", event["type"])
        return events


class HeldMessages:
    """The client's messages held back until a controller configured the call (a
    server-side agent serves it), in order; nothing is held until :meth:`hold`."""

    def __init__(self) -> None:
        self._held: list[str | bytes] | None = None

    @property
    def holding(self) -> bool:
        """Whether the client's messages are held now."""
        return self._held is not None

    def hold(self) -> None:
        """Hold the client's messages from now on."""
        if self._held is None:
            self._held = []

    def add(self, text: str | bytes) -> bool:
        """Hold ``text``; False when :data:`MAX_HELD_EVENTS` are held already (it is
        not)."""
        assert self._held is not None
        if len(self._held) >= MAX_HELD_EVENTS:
            return False
        self._held.append(text)
        return True

    def release(self) -> list[str | bytes]:
        """The messages held, oldest first; none are held from now on."""
        held, self._held = self._held, None
        return held or []


class SessionOutputs:
    """What the driver of a session drains from its core, passed straight to the core's
    :class:`PartyOutboxes` (in ``_outboxes``): a core inherits these and decides itself
    what goes in."""

    _outboxes: PartyOutboxes

    def drain_client(self) -> list[Event]:
        """The events for the client; none until its channel has opened."""
        return self._outboxes.drain_client()

    @property
    def upstream_pending(self) -> bool:
        """Whether :meth:`drain_upstream` has anything (so a writer need not wake for
        nothing)."""
        return self._outboxes.upstream_pending

    def drain_upstream(self) -> list[Event]:
        """The events for the upstream WebSocket."""
        return self._outboxes.drain_upstream()


class CallOutputs(SessionOutputs):
    """The :class:`~.call_protocol.CallProtocol` methods about a call's parties that pass
    straight to its core's :class:`PartyOutboxes` (and, for a sideband leaving, its
    :class:`~.flood.PartyGuards`, in ``_parties``)."""

    _parties: PartyGuards

    def channel_opened(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """The client's channel is open and takes messages of up to ``max_message_size``
        bytes (0: any size): held events may flow."""
        self._outboxes.channel_opened(max_message_size)

    def channel_closed(self) -> None:
        """The client's channel is gone with its peer connection: hold its events for the
        next one (a resume), as before the first opened."""
        self._outboxes.channel_closed()

    def peer_resumed(self, details: Mapping[str, Any]) -> None:
        """The call resumed on a new peer connection: the client's first event on its new
        channel is a ``relay.call.resumed`` with ``details`` (what the driver measured),
        before the events held meanwhile and whatever the client's event permissions (it
        is the relay's own); every sideband gets it too."""
        self._outboxes.resumed(details)

    def notify_client(self, event: Event) -> None:
        """An event of the relay's own for the client's channel only (``relay.*``, such as
        the notice that the call is recorded): right after the family's greeting (the
        channel's first event), or at once if that has gone."""
        self._outboxes.notify_client(event)

    def attach_sideband(self, name: str) -> None:
        """A server-side controller joined the call as ``name``: from now on it gets the
        call's server events, but for the greeting (it attached to a call under way)."""
        self._outboxes.attach(name)

    def detach_sideband(self, name: str) -> None:
        """The sideband ``name`` left; what was queued for it is dropped."""
        self._outboxes.detach(name)
        self._parties.forget(name)

    def drain_client_messages(self) -> list[str]:
        """:meth:`drain_client`, encoded to fit the channel's message size (see
        :mod:`relay.protocol.channel` for what replaces an event too large for it)."""
        return self._outboxes.drain_client_messages()

    def drain_sideband(self, name: str) -> list[Event]:
        """The events for the sideband ``name``."""
        return self._outboxes.drain_sideband(name)
