"""The live calls of one relay, by id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from ..config import Settings
from ..errors import CallNotFound, CapacityExceeded
from ..protocol.call_protocol import CoreFactory
from ..protocol.events import random_id
from ..protocol.realtime.session_config import Session
from ..upstream.client import UpstreamConnector
from ..webrtc.udp_ports import UdpPorts
from .call_driver import CallDriver
from .call_records import CallRecords
from .memory import heap_trimmer
from .prometheus import MetricsTotals

logger = logging.getLogger(__name__)

#: Ended calls whose last snapshot ``GET /v1/realtime/calls/{id}`` still shows.
ENDED_KEPT = 100
#: ``Retry-After`` of a relay at its most calls: calls last minutes, but some end any second.
CAPACITY_RETRY_AFTER = 5


def new_call_id() -> str:
    """``rtc_u1_`` and 32 random letters and digits: about 190 bits, like the hosted ids.
    (The app's calls take ids that name their owner: relay.cluster.ids.)"""
    return random_id("rtc_u1_", 32)


class CallRegistry:
    """Creates calls, finds them by id, and closes them all at shutdown."""

    def __init__(self, settings: Settings, ports: UdpPorts | None = None,
                 records: CallRecords | None = None) -> None:
        self.settings = settings
        #: Recordings and webhooks (None: neither, as in tests that build a bare registry).
        self.records = records
        #: Where calls' ICE sockets go (None: ports the OS picks).
        self.ports = ports
        self._calls: dict[str, CallDriver] = {}
        #: Told the id of each call that ends (e.g. to stop counting it toward its key).
        self.on_ended: list[Callable[[str], None]] = []
        self._trim = heap_trimmer() if settings.trim_memory else None
        #: What ended calls measured, for the metrics.
        self.totals = MetricsTotals()
        #: Snapshots of the last calls that ended, oldest first.
        self._ended: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: Set while no call is live (a drain waits on it).
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._calls)

    def upstream_connected(self) -> bool:
        """True while some live call holds an open upstream session."""
        return any(call.upstream_open for call in self._calls.values())

    def new(self, session: Session, upstream: UpstreamConnector,
            model: str | None = None, call_id: str | None = None, *,
            core: CoreFactory | None = None, record: bool = False,
            protocol: str = "realtime") -> CallDriver:
        """A new call ``call_id`` (a new id if None) on ``model`` whose upstream session
        comes from ``upstream``, speaking the protocol ``core`` makes (None: Realtime's,
        configured from the settings), registered; raises :class:`CapacityExceeded` at the limit.
        ``record``: the operator asked for this call to be recorded; ``protocol``: its
        family (``realtime`` or ``live``), as recordings and webhooks name it."""
        if len(self._calls) >= self.settings.max_calls:
            raise CapacityExceeded("The relay is at its limit of concurrent calls.",
                                   retry_after=CAPACITY_RETRY_AFTER)
        call_id = call_id or new_call_id()
        loop = asyncio.get_running_loop()
        recorder = None if self.records is None else self.records.recorder(
            call_id, requested=record, protocol=protocol, model=model, session=session,
            created_at=time.time(), clock=loop.time)
        records = self.records
        call = CallDriver(call_id, self.settings, session, upstream,
                          model=model, on_closed=self._forget, ports=self.ports,
                          core=core, recorder=recorder,
                          on_started=None if records is None else (
                              lambda started: records.started(started, protocol)))
        self._calls[call.id] = call
        self._empty.clear()
        self.totals.call_created(call)
        return call

    def __iter__(self) -> Iterator[CallDriver]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str) -> CallDriver:
        """The live call ``call_id``, or :class:`CallNotFound`."""
        call = self._calls.get(call_id)
        if call is None:
            raise CallNotFound()
        return call

    async def describe(self, call_id: str) -> dict[str, Any]:
        """The call ``call_id``, live or among the last ended, or :class:`CallNotFound`."""
        call = self._calls.get(call_id)
        if call is not None:
            return await call.describe()
        snapshot = self._ended.get(call_id)
        if snapshot is None:
            raise CallNotFound()
        return snapshot

    def ended(self, call_id: str) -> dict[str, Any] | None:
        """The snapshot of a lately ended call (None: live, unknown or long gone)."""
        return self._ended.get(call_id)

    async def wait_empty(self) -> None:
        """Wait until no call is live."""
        await self._empty.wait()

    async def close_all(self, reason: str = "relay shutting down") -> None:
        """Close every live call."""
        calls = list(self._calls.values())
        await asyncio.gather(*(call.close(reason) for call in calls), return_exceptions=True)

    def _forget(self, call: CallDriver) -> None:
        if self.records is not None:
            self.records.ended(call)
        if self._calls.pop(call.id, None) is not None:
            self.totals.call_ended(call)
            self._ended[call.id] = call.snapshot()
            if len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
            if not self._calls:
                self._empty.set()
            for listener in self.on_ended:
                listener(call.id)
        if self._trim is not None:
            self._trim()
