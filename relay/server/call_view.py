"""The API's view of one call: its counters, and the object ``GET .../calls/{id}`` returns.

Read from the call's driver, its media and its protocol core; nothing here changes the
call. The same view serves a live call and, kept by the registry, one that has ended.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..audio import FRAME_SECONDS, RATE
from ..protocol.call_measures import Truncation
from ..protocol.call_protocol import CallProtocol
from ..webrtc.call_media import CallMedia


class ViewedCall(Protocol):
    """What the view reads of a call (its driver, :class:`~.call_driver.CallDriver`)."""

    id: str
    core: CallProtocol
    media: CallMedia
    model: str | None
    close_reason: str | None
    created_at: float
    created_wall: float
    ended_at: float | None
    upstream_connect_seconds: float | None
    connect_seconds: float | None
    rtp: dict[str, Any] | None
    send_failures: int
    heard: int
    sidebands_attached: int
    sidebands_too_slow: int

    @property
    def recorded(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def closing(self) -> bool: ...
    @property
    def sidebands_live(self) -> int: ...
    @property
    def peer_state(self) -> str: ...

#: The media counters the view shows under ``uplink``.
UPLINK_FIELDS = ("uplink_packets", "uplink_lost", "uplink_late", "uplink_concealed",
                 "uplink_recovered")


def counters(call: ViewedCall) -> dict[str, Any]:
    """A snapshot of the call's counters, for logs, tests and the benchmark."""
    stats = call.core.stats
    return {
        "call_id": call.id,
        "session_type": call.core.session_type,
        **call.media.stats(),
        "uplink_samples_sent": stats.uplink_samples,
        "frames_out": stats.frames_out,
        "audio_frames_out": stats.audio_frames_out,
        "playout_dropped_samples": call.core.playout.dropped,
        "dropped_deltas": stats.dropped_deltas,
        "channel_send_failures": call.send_failures,
        "peer_datagrams": call.heard,
        "sidebands": call.sidebands_live,
        "sidebands_attached": call.sidebands_attached,
        "sidebands_too_slow": call.sidebands_too_slow,
        "barge_ins": barge_ins(stats.barge_ins),
    }


def snapshot(call: ViewedCall) -> dict[str, Any]:
    """The call's state, timings, audio, RTP statistics (as last read), event counts,
    barge-ins and last error."""
    stats = call.core.stats
    measures = stats.measures
    events: dict[str, dict[str, int]] = {}
    for (direction, kind), count in sorted(measures.events.items()):
        events.setdefault(direction, {})[kind] = count
    ended = None if call.ended_at is None else call.ended_at - call.created_at
    status = "closed" if call.closed else "closing" if call.closing else "live"
    media = call.media.stats()
    return {
        "id": call.id,
        "object": call.core.view_object,
        "session_type": call.core.session_type,
        "status": status,
        "peer_connection": call.peer_state,
        "model": call.model,
        "close_reason": call.close_reason,
        "recorded": call.recorded,
        "timings": {
            "created_at": round(call.created_wall, 3),
            "ended_at": None if ended is None else round(call.created_wall + ended, 3),
            "duration_seconds": None if ended is None else round(ended, 3),
            "upstream_connect_seconds": _rounded(call.upstream_connect_seconds),
            "connect_seconds": _rounded(call.connect_seconds),
        },
        "audio_seconds": {"up": round(stats.uplink_samples / RATE, 3),
                          "down": round(stats.audio_frames_out * FRAME_SECONDS, 3)},
        "rtp": call.rtp,
        "uplink": {key: media[key] for key in UPLINK_FIELDS},
        "events": events,
        "reply_latency": {"count": measures.reply_latency.count,
                          "sum_seconds": round(measures.reply_latency.total, 3)},
        "barge_ins": barge_ins(stats.barge_ins),
        "last_error": measures.last_error,
    }


def barge_ins(records: list[Truncation]) -> list[dict[str, Any]]:
    """What each barge-in cut, as the view and the counters show it."""
    return [{"reason": b.reason, "response_ids": b.response_ids, "truncated": b.truncated,
             "deleted": b.deleted, "cut_latency_ms": b.cut_latency_ms} for b in records]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
