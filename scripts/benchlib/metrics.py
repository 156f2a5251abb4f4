"""Sans-I/O statistics over what a load session recorded: RTP arrivals and click times.

All times are ``time.monotonic()`` seconds. A session records, for every echoed RTP packet,
its arrival time and sequence number, and the times of click onsets it sent and received.
These functions turn that into the benchmark's figures for one measured window.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

STALL_GAP = 0.100  # an inter-arrival gap longer than this is a stall
CLICK_PERIOD = 1.0  # a received click is matched to the last click sent before it


@dataclass
class SessionTrace:
    """What one client session saw: arrivals, sequence numbers, click onsets."""

    arrivals: list[float] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    sent_clicks: list[float] = field(default_factory=list)
    received_clicks: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class WindowStats:
    """One session's figures over a window."""

    frames: int
    lost: int
    stalls: int
    max_gap: float
    rtts: list[tuple[float, float]]  # (received at, round trip), received in the window
    clicks_sent: int  # sent early enough in the window that their echo is due inside it
    clicks_returned: int  # of those, how many came back


def unwrap_sequences(sequences: list[int]) -> list[int]:
    """Extend 16-bit RTP sequence numbers to a monotonic-ish integer line."""
    out: list[int] = []
    base = 0
    previous: int | None = None
    for seq in sequences:
        if previous is not None:
            delta = (seq - previous) & 0xFFFF
            if delta >= 0x8000:  # a reordered (earlier) packet
                delta -= 0x10000
            base += delta
        else:
            base = seq
        out.append(base)
        previous = seq
    return out


def lost_packets(extended: list[int]) -> int:
    """Sequence numbers missing between the lowest and highest seen."""
    if not extended:
        return 0
    unique = len(set(extended))
    return max(0, max(extended) - min(extended) + 1 - unique)


def gaps(arrivals: list[float], start: float, end: float) -> list[float]:
    """Inter-arrival gaps inside [start, end], counting the window edges as arrivals.

    The gap from the last arrival before the window (or the window start) to the first
    arrival in it, and from the last arrival to the window end, count too: a session that
    goes silent for the rest of the window shows one long gap.
    """
    first = bisect.bisect_left(arrivals, start)
    last = bisect.bisect_right(arrivals, end)
    inside = arrivals[first:last]
    before = arrivals[first - 1] if first > 0 else start
    points = [before, *inside, end]
    return [b - a for a, b in zip(points, points[1:], strict=False)]


def match_clicks(sent: list[float], received: list[float]) -> list[tuple[float, float]]:
    """Pair each received click with the last click sent before it: ``(sent_at, received_at)``.

    Round trips of a period or more cannot be told apart from the next click and are
    dropped; a sent click is paired once (a second detection of it is ignored).
    """
    pairs: list[tuple[float, float]] = []
    used: set[int] = set()
    for at in received:
        index = bisect.bisect_right(sent, at) - 1
        if index < 0 or index in used or at - sent[index] >= CLICK_PERIOD:
            continue
        used.add(index)
        pairs.append((sent[index], at))
    return pairs


def window_stats(trace: SessionTrace, start: float, end: float) -> WindowStats:
    """All of one session's figures for the window [start, end]."""
    first = bisect.bisect_left(trace.arrivals, start)
    last = bisect.bisect_right(trace.arrivals, end)
    extended = unwrap_sequences(trace.sequences)[first:last]
    window_gaps = gaps(trace.arrivals, start, end)
    pairs = match_clicks(trace.sent_clicks, trace.received_clicks)
    due_by = end - CLICK_PERIOD  # an echo is matched only within a period of its click
    return WindowStats(
        frames=last - first,
        lost=lost_packets(extended),
        stalls=sum(1 for g in window_gaps if g > STALL_GAP),
        max_gap=max(window_gaps),
        rtts=[(rx, rx - tx) for tx, rx in pairs if start <= rx <= end],
        clicks_sent=sum(1 for t in trace.sent_clicks if start <= t <= due_by),
        clicks_returned=sum(1 for tx, _ in pairs if start <= tx <= due_by),
    )


def rtt_summary(
    pairs: list[tuple[float, float]], start: float, end: float
) -> dict[str, float | None]:
    """Median, p95 and drift (ms) of pooled round trips.

    Drift is the median of the window's last third minus that of its first third: a
    server whose queue ratchets up under load shows it as a positive drift.
    """
    if not pairs:
        return {"median_ms": None, "p95_ms": None, "drift_ms": None, "min_ms": None, "max_ms": None}
    values = np.array([rtt for _, rtt in pairs]) * 1000.0
    third = (end - start) / 3.0
    early = [rtt * 1000.0 for at, rtt in pairs if at < start + third]
    late = [rtt * 1000.0 for at, rtt in pairs if at >= end - third]
    drift = float(np.median(late) - np.median(early)) if early and late else None
    return {
        "median_ms": float(np.median(values)),
        "p95_ms": float(np.percentile(values, 95)),
        "drift_ms": drift,
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
    }


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two points)."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), 1)[0])
