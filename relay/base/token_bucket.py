"""Token buckets by key, in process: the rate limits of call creation without Redis.

Each bucket holds a minute's worth of calls and refills continuously, so a client may
create its minute's calls at once and then one every ``60 / per_minute`` seconds.
relay/cluster/call_limits.py uses them per client address and per client secret (and counts
in Redis instead when relays share one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Buckets kept before full ones (idle clients) are forgotten.
MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key: ``per_minute`` tokens a minute, at most a minute's worth held."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, per_minute)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when there was one, else the seconds until there is
        one (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) < MAX_BUCKETS:
            return
        full = [key for key, b in self._buckets.items()
                if b.tokens + (now - b.updated) * self._rate >= self._capacity]
        for key in full:
            del self._buckets[key]
