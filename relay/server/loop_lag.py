"""Watching the event loop for lag: every call's audio is paced on it.

A task wakes every ``interval`` seconds and measures how late it woke: the time some
callback held the loop (a decode, a GC pause, a blocking call). Playout frames are 20 ms
apart, so a lag of 100 ms is heard as a gap. The lag feeds the metrics, and a warning is
logged (at most every ``WARN_EVERY`` seconds) when it passes the threshold, with how many
calls were live, since a loop that lags only under load needs that to be understood.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ..base.owned_task import OwnedTask

logger = logging.getLogger(__name__)

#: Seconds between two wake-ups.
INTERVAL = 0.25
#: The largest lag is kept over this many seconds of samples.
WINDOW = 10.0
#: Seconds between two lag warnings at most.
WARN_EVERY = 10.0


class LoopLagMonitor:
    """Measures the running loop's lag from a task it owns."""

    def __init__(self, threshold: float, calls: Callable[[], int], *,
                 interval: float = INTERVAL) -> None:
        self.threshold = threshold
        self.interval = interval
        #: The lag measured last, in seconds.
        self.lag = 0.0
        self._calls = calls
        self._recent: deque[float] = deque(maxlen=max(1, int(WINDOW / interval)))
        self._warned_at: float | None = None
        self._task = OwnedTask()

    @property
    def recent_max(self) -> float:
        """The largest lag over the last ``WINDOW`` seconds."""
        return max(self._recent, default=0.0)

    def start(self) -> None:
        """Start measuring."""
        self._task.start(self._run(), "loop-lag")

    async def close(self) -> None:
        """Stop measuring; safe to call twice."""
        await self._task.close()

    def observe(self, lag: float, now: float) -> None:
        """Record one measurement, taken at ``now``; warn when it passes the threshold."""
        self.lag = lag
        self._recent.append(lag)
        if lag >= self.threshold and (self._warned_at is None
                                      or now - self._warned_at >= WARN_EVERY):
            self._warned_at = now
            logger.warning("the event loop lagged %.0f ms (threshold %.0f ms) with %d calls "
                           "live: their audio may have gaps", lag * 1000,
                           self.threshold * 1000, self._calls())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.observe(max(0.0, now - expected), now)
