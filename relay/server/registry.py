"""The live calls of one relay, by id."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator

from ..config import Settings
from ..errors import CallNotFound, CapacityExceeded, RateLimited
from ..protocol.events import random_id
from ..protocol.session import Session
from ..upstream.client import UpstreamConnector
from ..webrtc.udp_ports import UdpPorts
from .driver import CallDriver
from .memory import heap_trimmer

logger = logging.getLogger(__name__)

#: ``Retry-After`` of a relay at its most calls: calls last minutes, but some end any second.
CAPACITY_RETRY_AFTER = 5


def new_call_id() -> str:
    """``rtc_u1_`` and 32 random letters and digits: about 190 bits, like the hosted ids."""
    return random_id("rtc_u1_", 32)


class CallRegistry:
    """Creates calls, finds them by id, and closes them all at shutdown."""

    def __init__(self, settings: Settings, ports: UdpPorts | None = None) -> None:
        self.settings = settings
        #: Where calls' ICE sockets go (None: ports the OS picks).
        self.ports = ports
        self._calls: dict[str, CallDriver] = {}
        #: call id → the client secret (its id) that created it, and its live calls' count.
        self._owners: dict[str, str] = {}
        self._owned: Counter[str] = Counter()
        self._trim = heap_trimmer() if settings.trim_memory else None

    def __len__(self) -> int:
        return len(self._calls)

    def new(self, session: Session, upstream: UpstreamConnector,
            model: str | None = None, owner: str | None = None) -> CallDriver:
        """A new call on ``model`` whose upstream session comes from ``upstream``,
        registered; raises :class:`CapacityExceeded` at the limit, and
        :class:`RateLimited` when ``owner`` (a client secret's id) has its most calls."""
        if len(self._calls) >= self.settings.max_calls:
            raise CapacityExceeded("The relay is at its limit of concurrent calls.",
                                   retry_after=CAPACITY_RETRY_AFTER)
        if owner is not None and self._owned[owner] >= self.settings.max_calls_per_key:
            raise RateLimited("This key has as many calls at once as it may have.",
                              code="too_many_calls")
        call = CallDriver(new_call_id(), self.settings, session, upstream,
                          model=model, on_closed=self._forget, ports=self.ports)
        self._calls[call.id] = call
        if owner is not None:
            self._owners[call.id] = owner
            self._owned[owner] += 1
        return call

    def __iter__(self) -> Iterator[CallDriver]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str) -> CallDriver:
        """The live call ``call_id``, or :class:`CallNotFound`."""
        call = self._calls.get(call_id)
        if call is None:
            raise CallNotFound()
        return call

    async def close_all(self, reason: str = "relay shutting down") -> None:
        """Close every live call."""
        calls = list(self._calls.values())
        await asyncio.gather(*(call.close(reason) for call in calls), return_exceptions=True)

    def _forget(self, call: CallDriver) -> None:
        self._calls.pop(call.id, None)
        owner = self._owners.pop(call.id, None)
        if owner is not None:
            self._owned[owner] -= 1
            if not self._owned[owner]:
                del self._owned[owner]
        if self._trim is not None:
            self._trim()
