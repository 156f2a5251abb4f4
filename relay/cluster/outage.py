"""Whether Redis answers, told to the log once per outage rather than once per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

#: While Redis stays down, the warning is repeated this often (seconds).
REPEAT_EVERY = 60.0

#: What a Redis call raises when Redis cannot be reached or answers an error.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisOutage:
    """Logs the first failure of an outage (and again every :data:`REPEAT_EVERY` s while
    it lasts) and the recovery; never a line per failed request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_since: float | None = None
        self._warned_at = 0.0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._down_since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """Redis failed while doing ``what``; log it unless this outage was told lately."""
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        elif now - self._warned_at < REPEAT_EVERY:
            return
        self._warned_at = now
        logger.warning("Redis unavailable (%s: %s): follow-up requests for other relays' "
                       "calls answer 503, limits count per process, this relay's own calls "
                       "go on", what, type(exc).__name__)

    def succeeded(self) -> None:
        """Redis answered: log the end of an outage, if there was one."""
        if self._down_since is not None:
            logger.warning("Redis reachable again after %.0f s", self._clock() - self._down_since)
            self._down_since = None
