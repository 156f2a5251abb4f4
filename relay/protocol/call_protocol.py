"""What a call's driver needs of a protocol core: the seam between protocol families.

The server's :class:`~relay.server.call_driver.CallDriver` owns the I/O of a call (the peer
connection, its media and data channel, the upstream socket, the sidebands, the tasks)
and knows nothing of the events any voice API exchanges. Everything it feeds in and drains
out goes through the interface below, which each protocol family implements without I/O:
the Realtime API's is :class:`~relay.protocol.realtime.call_core.CallCore`. A second family
(GPT-Live) is a sibling folder of :mod:`relay.protocol.realtime` with its own core, and the
media path, registry, auth, limits and metrics serve it unchanged.

What every family shares is here in :mod:`relay.protocol` beside this module: event
parsing and ids (:mod:`.events`), what fits the data channel (:mod:`.channel`), flood
limits (:mod:`.flood`), each party's outbox (:mod:`.outboxes`), masking the upstream's
echo of secrets (:mod:`.redact`), and the per-call counters (:mod:`.call_measures`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..audio.playout import Playout
from ..errors import RelayError
from .call_measures import CallStats
from .events import Event
from .flood import CLIENT, MessageLimits
from .redact import Redactor

__all__ = ["CLIENT", "CallProtocol", "CoreFactory"]

#: The relay's own event telling the client, first thing on its new channel, that its call
#: resumed on a new peer connection (any protocol family: the transport is the driver's).
RESUMED_EVENT = "relay.call.resumed"


class CallProtocol(Protocol):
    """One call's protocol state, fed and drained by its driver (all calls are synchronous).

    Inputs are what arrived; outputs are drained after each input. ``next_frame`` is
    called every 20 ms by the outbound track and must be cheap.
    """

    #: The ``object`` the per-call view names (``GET .../{id}``): ``"realtime.call"``.
    view_object: str
    #: The session the call was created with (the operator's, the key's and the request's).
    requested_session: dict[str, Any]
    #: The call's effective session, as the upstream last described it (for the record).
    session: dict[str, Any]
    #: Audio counters, barge-ins and event measures (read by logs, metrics and the view).
    stats: CallStats
    #: The assistant audio waiting to be played out.
    playout: Playout
    #: Set when a party floods the call: the driver ends the call with this reason.
    end_reason: str | None

    @property
    def session_type(self) -> str | None:
        """The kind of session, for the view, logs and metrics (the Realtime API's:
        ``"realtime"`` or ``"transcription"``); None for a family without kinds."""

    @property
    def upstream_intent(self) -> str | None:
        """What the upstream session is opened for, when the connection must say (the
        Realtime API opens a transcription session at ``?intent=transcription``); None for
        a session opened on the call's model."""

    def start(self) -> None:
        """The upstream is connected: queue what opens the session."""

    def channel_opened(self, max_message_size: int) -> None:
        """The client's events channel is open for messages of up to ``max_message_size``
        bytes (0: any size)."""

    def channel_closed(self) -> None:
        """The client's events channel went with its peer connection: hold the client's
        events until :meth:`channel_opened` (the call resumed on a new one)."""

    def peer_resumed(self, details: Mapping[str, Any]) -> None:
        """The call resumed on a new peer connection: tell the client first thing on its
        new channel (``details``: what the driver measured)."""

    def uplink_audio(self, pcm: bytes) -> None:
        """Microphone audio: 24 kHz mono PCM16."""

    def client_message(self, text: str | bytes, source: str = CLIENT) -> None:
        """A message from the data channel, or from the sideband ``source`` names."""

    def upstream_message(self, text: str | bytes) -> None:
        """A message from the upstream WebSocket."""

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream WebSocket closed with ``code`` and ``reason``."""

    @property
    def upstream_down(self) -> bool:
        """True from :meth:`upstream_lost` until :meth:`upstream_reopened`: nothing is to
        be sent upstream meanwhile."""

    @property
    def idle(self) -> bool:
        """True when no reply is in flight and no assistant audio waits to be played (a
        planned upstream rollover waits for it)."""

    def upstream_lost(self, close_code: int | None) -> str | None:
        """The upstream WebSocket closed under the call with ``close_code``. When a new
        session is worth opening, end what was in flight, keep what the new session needs
        and return why the old one went (the driver opens one, then calls
        :meth:`upstream_reopened`); None: the call is to end."""

    def upstream_reopened(self, reason: str) -> None:
        """A new upstream session is open in place of the lost one (``reason``: why that
        one went): queue what rebuilds the call's session and conversation on it."""

    def relay_error(self, error: RelayError) -> None:
        """Tell the client and every sideband about ``error`` (an ``error`` event)."""

    def notify_client(self, event: Event) -> None:
        """An event of the relay's own (``relay.*``, such as the notice that the call is
        recorded) for the client's channel only, right after the family's greeting (the
        channel's first event), or at once if that has gone."""

    def hold_client_events(self) -> None:
        """Hold the client's events until a controller has configured the session."""

    def release_client_events(self) -> None:
        """Handle the held client events now, and hold no more."""

    def attach_sideband(self, name: str) -> None:
        """A sideband ``name`` joined: it gets the call's server events from now on."""

    def detach_sideband(self, name: str) -> None:
        """The sideband ``name`` left."""

    def next_frame(self) -> bytes:
        """The next 20 ms of assistant audio (silence when there is none)."""

    def drain_client_messages(self) -> list[str]:
        """The messages for the client's channel, ready to send."""

    def drain_sideband(self, name: str) -> list[Event]:
        """The events for the sideband ``name``."""

    def drain_upstream(self) -> list[Event]:
        """The events for the upstream."""

    @property
    def upstream_pending(self) -> bool:
        """True when events wait to go upstream."""


class CoreFactory(Protocol):
    """Makes a family's protocol core for a new call (a core class itself is one)."""

    def __call__(
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
    ) -> CallProtocol:
        """A core for ``call_id`` opening ``session``."""
