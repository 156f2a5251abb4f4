"""Whether the relay can take a call now: the upstream reachable, a call slot free.

``GET /readyz`` must not open a connection per request (a load balancer asks often), so
:class:`UpstreamProbe` checks the upstream in the background, at most every
``interval`` seconds, and the handler reads its last answer. The check is a TCP connect
to the upstream's host and port, not a WebSocket handshake: a handshake would open a
Realtime session (and, on a hosted upstream, spend the key) just to ask.

While calls are live their own upstream sessions show the upstream is reachable, so the
probe waits: it runs only when the relay is idle. Probing then had a cost: against the
embedded server run as its own process (``relay upstream``, the benchmark's echo), a
connection every 2 s raised the live calls' echo round trip at 12 calls from about 44 ms
to about 84 ms (scripts/bench, same run; probing a closed port instead cost nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from ..base.owned_task import OwnedTask

logger = logging.getLogger(__name__)

#: Seconds between two probes of the upstream.
PROBE_INTERVAL = 2.0


def host_port(url: str) -> tuple[str, int]:
    """The host and port a ``ws://`` or ``wss://`` URL connects to."""
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("wss", "https") else 80
    return parts.hostname or "localhost", parts.port or default


class UpstreamProbe:
    """The upstream's reachability, refreshed by a background task it owns."""

    def __init__(self, url: str, *, interval: float = PROBE_INTERVAL,
                 timeout: float = 2.0, busy: Callable[[], bool] = lambda: False) -> None:
        self.host, self.port = host_port(url)
        self.interval = interval
        self.timeout = timeout
        #: True while live calls' upstream sessions stand for the probe (it waits).
        self._busy = busy
        #: Why the upstream is not reachable (None: it was at the last probe).
        self.problem: str | None = "the upstream has not been probed yet"
        self._task = OwnedTask()

    def start(self) -> None:
        """Start probing (the first probe runs at once)."""
        self._task.start(self._run(), "upstream-probe")

    async def close(self) -> None:
        """Stop probing; safe to call twice."""
        await self._task.close()

    async def probe(self) -> None:
        """Probe once and remember the answer."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout)
        except (TimeoutError, OSError) as exc:
            problem = (f"the upstream ({self.host}:{self.port}) is unreachable: "
                       f"{type(exc).__name__}: {exc}".rstrip(": "))
            if problem != self.problem:
                logger.warning("%s", problem)
            self.problem = problem
            return
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self._reachable()

    def _reachable(self) -> None:
        if self.problem is not None:
            logger.info("the upstream (%s:%d) is reachable", self.host, self.port)
        self.problem = None

    async def _run(self) -> None:
        while True:
            if self._busy():
                self._reachable()  # live calls' upstream sessions say so
            else:
                await self.probe()
            await asyncio.sleep(self.interval)
