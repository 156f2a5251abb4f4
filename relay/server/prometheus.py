"""The relay's Prometheus metrics: what every call measured, folded into app-wide totals.

Nothing here runs per event or per frame. Each call keeps its own plain counters (its
core's :class:`~relay.protocol.call_measures.CallMeasures` and :class:`CallStats`, its media's
packet counts); when it ends, the registry folds them into one :class:`Tally`
(:meth:`MetricsTotals.call_ended`), and a scrape adds the live calls' tallies to a copy
of it (:class:`RelayCollector`). Labels are bounded: close reasons and barge-in causes
map onto small fixed sets, event types onto the known Realtime ones; no call ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..audio import FRAME_SECONDS, RATE
from ..protocol.call_measures import VOICE_BUCKETS, Histogram

if TYPE_CHECKING:
    from .call_driver import CallDriver
    from .websocket_session import WebSocketSession

#: Call lengths (seconds): from a failed setup to an hour.
CALL_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Connecting a peer or an upstream (seconds): ICE and DTLS can take a while.
CONNECT_BUCKETS = (*VOICE_BUCKETS, 10.0, 20.0, 30.0)
#: Barge-in stop latency (seconds): a clear asked for stops within a frame or two (tens
#: of ms); speech over the reply takes the upstream's VAD detection on top (hundreds).
STOP_BUCKETS = (0.01, 0.02, 0.04, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5,
                2.0, 3.0)

#: Prefixes of the calls' free-text close reasons → the ``reason`` label.
CLOSE_REASONS = (
    ("hangup", "hangup"),
    ("peer connection failed", "peer_failed"),
    ("peer connection closed", "peer_closed"),
    ("peer did not connect in time", "connect_timeout"),
    ("peer went silent", "peer_silent"),
    ("peer silent", "peer_silent"),
    ("upstream closed", "upstream_closed"),
    ("setup failed", "setup_failed"),
    ("internal error", "internal_error"),
    ("relay shutting down", "shutdown"),
)

#: (name, help, label names) of the counters, in exposition order.
COUNTERS = (
    ("relay_calls_created", "Calls created (offers accepted for setup), by protocol "
     "(realtime, live).", ("protocol",)),
    ("relay_sessions_created", "Sessions created, by transport (webrtc: a call; websocket: "
     "a WebSocket session) and session type (realtime, transcription, or live: GPT-Live).",
     ("transport", "type")),
    ("relay_calls_ended", "Calls ended, by protocol and why.", ("protocol", "reason")),
    ("relay_audio_seconds", "Seconds of audio relayed: up (microphone to model) and "
     "down (model to peer).", ("direction",)),
    ("relay_uplink_packets", "The peer's RTP audio packets: received, and those lost, "
     "late (after their reorder window), concealed, or recovered from Opus FEC.",
     ("outcome",)),
    ("relay_playout_dropped_seconds", "Reply audio dropped because playout was full.", ()),
    ("relay_barge_ins", "Barge-ins that cut reply audio, by cause.", ("cause",)),
    ("relay_truncations", "conversation.item.truncate sent upstream by barge-ins.", ()),
    ("relay_item_deletions", "conversation.item.delete sent upstream by barge-ins (items "
     "nothing of which was heard).", ()),
    ("relay_events", "Realtime events, by direction and type (unknown types: other).",
     ("direction", "type")),
    ("relay_errors", "error events sent to clients and sidebands, by code.", ("code",)),
)
#: (name, help, bounds) of the histograms.
HISTOGRAMS = (
    ("relay_call_duration_seconds", "Length of ended calls.", CALL_BUCKETS),
    ("relay_call_connect_seconds", "From the offer to the peer connection's 'connected'.",
     CONNECT_BUCKETS),
    ("relay_upstream_connect_seconds", "Connecting the upstream Realtime WebSocket.",
     CONNECT_BUCKETS),
    ("relay_reply_latency_seconds", "From input_audio_buffer.speech_stopped to the first "
     "frame of reply audio sent on RTP.", VOICE_BUCKETS),
    ("relay_barge_in_stop_seconds", "Barge-in stop latency: from the user starting to "
     "talk over reply audio (or a clear arriving) to the relay sending no more of it.",
     STOP_BUCKETS),
)
_BOUNDS = {name: bounds for name, _, bounds in HISTOGRAMS}

Labels = tuple[str, ...]


def protocol_of(call: CallDriver) -> str:
    """The protocol family of ``call``: ``realtime`` or ``live`` (its view's object kind)."""
    return call.core.view_object.split(".", 1)[0]


def close_category(reason: str | None) -> str:
    """A call's free-text close reason as one of a few fixed labels (else ``other``)."""
    for prefix, label in CLOSE_REASONS:
        if reason is not None and reason.startswith(prefix):
            return label
    return "other"


def barge_in_cause(reason: str) -> str:
    """A barge-in's reason as a bounded label (a sideband's name is not one)."""
    if reason in ("speech_started", "client_clear"):
        return reason
    if reason.endswith("_cancel"):
        return "cancel"  # a sideband's response.cancel
    return "truncate" if reason.endswith("_truncate") else "other"


@dataclass
class Tally:
    """Counter values by (metric, labels), and histograms by metric."""

    counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def inc(self, name: str, labels: Labels = (), value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name`` at ``labels``."""
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + value

    def histogram(self, name: str) -> Histogram:
        """The histogram ``name`` (created empty on first use)."""
        histogram = self.histograms.get(name)
        if histogram is None:
            histogram = self.histograms[name] = Histogram(_BOUNDS[name])
        return histogram

    def add(self, other: Tally) -> None:
        """Fold ``other`` into this tally."""
        for key, value in other.counters.items():
            self.counters[key] = self.counters.get(key, 0.0) + value
        for name, histogram in other.histograms.items():
            self.histogram(name).add(histogram)

    def copy(self) -> Tally:
        """An independent copy."""
        return Tally(dict(self.counters),
                     {name: h.copy() for name, h in self.histograms.items()})


def call_tally(call: CallDriver) -> Tally:
    """Everything ``call`` measured so far, as counters and histograms."""
    tally = Tally()
    stats = call.core.stats
    tally.inc("relay_audio_seconds", ("up",), stats.uplink_samples / RATE)
    tally.inc("relay_audio_seconds", ("down",), stats.audio_frames_out * FRAME_SECONDS)
    inbound = call.media.inbound.stats
    for outcome, value in (("received", inbound.packets), ("lost", inbound.lost),
                           ("late", inbound.late), ("concealed", inbound.concealed),
                           ("recovered", inbound.recovered)):
        tally.inc("relay_uplink_packets", (outcome,), value)
    tally.inc("relay_playout_dropped_seconds", (), call.core.playout.dropped / RATE)
    stop = tally.histogram("relay_barge_in_stop_seconds")
    for barge in stats.barge_ins:
        tally.inc("relay_barge_ins", (barge_in_cause(barge.reason),))
        tally.inc("relay_truncations", (), len(barge.truncated))
        tally.inc("relay_item_deletions", (), len(barge.deleted))
        if barge.cut_latency_ms is not None:
            stop.observe(barge.cut_latency_ms / 1000)
    measures = stats.measures
    for (direction, kind), count in measures.events.items():
        tally.inc("relay_events", (direction, kind), count)
    for code, count in measures.errors.items():
        tally.inc("relay_errors", (code,), count)
    tally.histogram("relay_reply_latency_seconds").add(measures.reply_latency)
    if call.upstream_connect_seconds is not None:
        tally.histogram("relay_upstream_connect_seconds").observe(call.upstream_connect_seconds)
    if call.connect_seconds is not None:
        tally.histogram("relay_call_connect_seconds").observe(call.connect_seconds)
    if call.ended_at is not None:
        tally.histogram("relay_call_duration_seconds").observe(call.ended_at - call.created_at)
        tally.inc("relay_calls_ended", (protocol_of(call), close_category(call.close_reason)))
    return tally


class MetricsTotals:
    """What the calls that ended measured, plus the count of calls created."""

    def __init__(self) -> None:
        self.tally = Tally()

    def call_created(self, call: CallDriver) -> None:
        """A call was created (by protocol; a Realtime call by its session type too)."""
        self.tally.inc("relay_calls_created", (protocol_of(call),))
        self.tally.inc("relay_sessions_created",
                       ("webrtc", call.core.session_type or protocol_of(call)))

    def websocket_session_created(self, session_type: str) -> None:
        """A WebSocket session (``GET /v1/realtime`` without a call, or GPT-Live's
        ``GET /v1/live/sessions``) began."""
        self.tally.inc("relay_sessions_created", ("websocket", session_type))

    def websocket_session_ended(self, session: WebSocketSession) -> None:
        """Fold the ended WebSocket ``session``'s event and error counts in."""
        measures = session.core.measures
        for (direction, kind), count in measures.events.items():
            self.tally.inc("relay_events", (direction, kind), count)
        for code, count in measures.errors.items():
            self.tally.inc("relay_errors", (code,), count)

    def call_ended(self, call: CallDriver) -> None:
        """Fold the ended ``call``'s measurements in (once, from its on_closed)."""
        self.tally.add(call_tally(call))


class RelayCollector:
    """A Prometheus collector: the totals plus the live calls, read at scrape time."""

    def __init__(self, totals: MetricsTotals, live: Callable[[], Iterable[CallDriver]],
                 gauges: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self._totals = totals
        self._live = live
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        """The metric families, as of now."""
        tally = self._totals.tally.copy()
        for call in self._live():
            tally.add(call_tally(call))
        for name, (documentation, value) in self._gauges().items():
            yield GaugeMetricFamily(name, documentation, value=value)
        for name, documentation, label_names in COUNTERS:
            counter = CounterMetricFamily(name, documentation, labels=label_names)
            for (metric, labels), value in sorted(tally.counters.items()):
                if metric == name:
                    counter.add_metric(labels, value)
            if not label_names and not counter.samples:
                counter.add_metric((), 0.0)
            yield counter
        for name, documentation, bounds in HISTOGRAMS:
            family = HistogramMetricFamily(name, documentation)
            histogram = tally.histograms.get(name) or Histogram(bounds)
            family.add_metric((), _cumulative(histogram), histogram.total)
            yield family


def _cumulative(histogram: Histogram) -> list[tuple[str, float]]:
    buckets, running = [], 0
    for bound, count in zip([*map(_bound, histogram.bounds), "+Inf"], histogram.counts,
                            strict=True):
        running += count
        buckets.append((bound, float(running)))
    return buckets


def _bound(value: float) -> str:
    return repr(float(value))
