"""Per-call measurements any protocol core keeps: event counts by type and direction,
error codes, bucketed latencies, the audio counters (:class:`CallStats`) and what each
barge-in cut (:class:`Truncation`).

Everything here is plain data updated by dict increments and list indexing, cheap enough
for every event of every call; the server folds it into app-wide totals when a call ends
and reads the live calls' copies at scrape time (see :mod:`relay.server.prometheus`).
Label values are bounded: an event type not in :data:`KNOWN_EVENT_TYPES` counts as
``"other"``, so a peer cannot grow the label set by inventing types.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .live.live_events import EVENT_TYPES as LIVE_EVENT_TYPES

#: Where an event went: received from the upstream, the client's data channel, or a
#: sideband; sent to the upstream, the client or a sideband.
DIRECTIONS = ("from_upstream", "from_client", "from_sideband",
              "to_upstream", "to_client", "to_sideband")

#: The Realtime (GA) event types, client and server, plus the WebRTC-only ones.
KNOWN_EVENT_TYPES = frozenset({
    # client events
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "conversation.item.create", "conversation.item.retrieve",
    "conversation.item.truncate", "conversation.item.delete", "response.create",
    "response.cancel", "output_audio_buffer.clear",
    # server events
    "error", "session.created", "session.updated", "conversation.created",
    "conversation.item.created", "conversation.item.added", "conversation.item.done",
    "conversation.item.retrieved", "conversation.item.truncated", "conversation.item.deleted",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.segment",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.committed", "input_audio_buffer.cleared",
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
    "input_audio_buffer.timeout_triggered",
    "output_audio_buffer.started", "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
    "response.created", "response.done", "response.output_item.added",
    "response.output_item.done", "response.content_part.added",
    "response.content_part.done", "response.output_text.delta", "response.output_text.done",
    "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
    "response.output_audio.delta", "response.output_audio.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress", "response.mcp_call.completed",
    "response.mcp_call.failed", "mcp_list_tools.in_progress", "mcp_list_tools.completed",
    "mcp_list_tools.failed", "rate_limits.updated",
}) | LIVE_EVENT_TYPES

#: Latency buckets for a voice conversation (seconds): 50 ms to 5 s.
VOICE_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5,
                                    2.0, 3.0, 5.0)
#: Uplink chunks whose arrival times are kept for timing barge-ins (10 s of 20 ms chunks:
#: an upstream reports the start of speech well within that).
UPLINK_HISTORY = 512
#: Longest error code kept as a label of its own (longer ones count as ``"other"``).
MAX_CODE_LENGTH = 64


def event_label(kind: str) -> str:
    """``kind`` if it is a known Realtime or GPT-Live event type, else ``"other"``."""
    return kind if kind in KNOWN_EVENT_TYPES else "other"


@dataclass
class Histogram:
    """Counts of observations at or below each bound (non-cumulative), and their sum."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            # One more slot for the observations above the last bound (+Inf).
            self.counts = [0] * (len(self.bounds) + 1)

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: Histogram) -> None:
        """Fold ``other`` (with the same bounds) into this one."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total

    def copy(self) -> Histogram:
        """An independent copy."""
        return Histogram(self.bounds, list(self.counts), self.total)


class UplinkArrivals:
    """When the relay received each stretch of the uplink audio it sent upstream.

    The upstream names moments of the input audio by their position in it
    (``audio_start_ms``: ms of audio appended since the session began); this maps a
    position back to the clock time its audio reached the relay. One entry per chunk
    appended, the last :data:`UPLINK_HISTORY` kept; a position is timed by the arrival of
    its chunk (a chunk goes up when its last packet arrives: with the default 20 ms chunks
    and a browser's 20 ms packets, that is the packet that carried it).
    """

    def __init__(self, history: int = UPLINK_HISTORY) -> None:
        #: (samples sent so far, after this chunk; clock time it arrived), oldest first.
        self._chunks: deque[tuple[int, float]] = deque(maxlen=history)
        #: Samples before this position have fallen out of the history.
        self._floor = 0

    def arrived(self, end_sample: int, at: float) -> None:
        """Uplink audio up to ``end_sample`` (samples since the start) arrived at ``at``."""
        if len(self._chunks) == self._chunks.maxlen:
            self._floor = self._chunks[0][0]
        self._chunks.append((end_sample, at))

    def time_of(self, sample: int) -> float | None:
        """When the audio at ``sample`` had arrived, or None if it is older than the
        history or has not arrived."""
        if sample < self._floor or not self._chunks or sample >= self._chunks[-1][0]:
            return None
        at = self._chunks[-1][1]
        # Newest first: the positions upstreams report are recent.
        for end, arrived_at in reversed(self._chunks):
            if end <= sample:
                break
            at = arrived_at
        return at


@dataclass
class CallMeasures:
    """What the core measures about one call, beside :class:`CallStats`' counters."""

    #: (direction, event label) → events.
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Error code → ``error`` events sent to the client or a sideband.
    errors: dict[str, int] = field(default_factory=dict)
    #: From ``input_audio_buffer.speech_stopped`` to the first frame of reply audio sent.
    reply_latency: Histogram = field(default_factory=lambda: Histogram(VOICE_BUCKETS))
    #: Clock time of the speech_stopped not yet answered by reply audio.
    speech_stopped_at: float | None = None
    #: The last error sent to the client: its code and message.
    last_error: dict[str, str] | None = None

    def count(self, direction: str, kind: str) -> None:
        """One event of type ``kind`` went ``direction``."""
        key = (direction, kind if kind in KNOWN_EVENT_TYPES else "other")
        self.events[key] = self.events.get(key, 0) + 1

    def error(self, body: object) -> None:
        """An ``error`` event's ``error`` object was sent out."""
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH:
            code = "other"
        self.errors[code] = self.errors.get(code, 0) + 1
        message = body.get("message") if isinstance(body, dict) else None
        self.last_error = {"code": code,
                           "message": message[:500] if isinstance(message, str) else ""}

    def reply_audio(self, now: float) -> None:
        """A frame of reply audio went out at ``now``: ends a pending reply wait."""
        if self.speech_stopped_at is not None:
            self.reply_latency.observe(max(0.0, now - self.speech_stopped_at))
            self.speech_stopped_at = None


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
    #: Stop latency (ms): from the user starting to talk over reply audio (the arrival of
    #: the uplink audio the upstream's ``speech_started`` places the speech onset at) or a
    #: request to stop arriving (``output_audio_buffer.clear``, a truncation), to the
    #: relay sending no more of the reply on RTP. None when that cannot be told: no reply
    #: audio was playing by then, or the onset is unknown.
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
    #: Event counts, error codes and the reply latency.
    measures: CallMeasures = field(default_factory=CallMeasures)
