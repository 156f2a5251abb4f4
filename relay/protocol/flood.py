"""How much a client or a sideband may send on a call: message size and message rate.

A message over the size, or over the rate, is answered with an ``error`` event and
dropped; the call goes on. A party that keeps sending past its rate is flooding: after
``flood_drops`` messages dropped since it last went quiet (its bucket full again) the call
should end (only that call). Sans-I/O:
the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import InvalidRequest, RateLimited, RelayError


@dataclass(frozen=True)
class MessageLimits:
    """What one party (the client, or one sideband) may send."""

    max_bytes: int = 256 * 1024
    #: Messages a second, with a second's worth (at least 10) allowed at once.
    per_second: float = 50.0
    #: Messages dropped for the rate, since the party last went quiet, that end the call.
    flood_drops: int = 500


class MessageGuard:
    """One party's limits: says whether each message may be handled."""

    def __init__(self, limits: MessageLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._capacity = max(10.0, limits.per_second)
        self._tokens = self._capacity
        self._updated = clock()
        self._dropped = 0

    @property
    def flooding(self) -> bool:
        """True once ``flood_drops`` messages were dropped since the party last went quiet."""
        return self._dropped >= self.limits.flood_drops

    def check(self, message: str | bytes) -> RelayError | None:
        """None when ``message`` may be handled; else the error to answer it with (it is
        then dropped). Only the first message dropped since the party last went quiet gets
        an answer, so a flood is not echoed back."""
        if _size_over(message, self.limits.max_bytes):
            return InvalidRequest(
                f"The message is larger than {self.limits.max_bytes} bytes; it was dropped.",
                code="message_too_large")
        now = self._clock()
        self._tokens = min(self._capacity,
                           self._tokens + (now - self._updated) * self.limits.per_second)
        self._updated = now
        if self._tokens >= self._capacity - 1.0:
            self._dropped = 0  # quiet for a while: what it sends next is a new run
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        self._dropped += 1
        if self._dropped > 1:
            return _SILENT
        return RateLimited(
            f"More than {self.limits.per_second:g} messages a second; this one and those "
            "until the rate falls are dropped.")


def _size_over(message: str | bytes, limit: int) -> bool:
    """Whether ``message`` is over ``limit`` bytes on the wire (a text message's UTF-8:
    a character may take four bytes, so its length alone would let 4x the limit in)."""
    if isinstance(message, bytes) or len(message) > limit:
        return len(message) > limit
    return len(message) * 4 > limit and len(message.encode("utf-8", "surrogatepass")) > limit


#: A dropped message that gets no answer (its run already got one).
_SILENT = RelayError("dropped", code="dropped")

#: The name of the client's data channel among a call's parties (a sideband's is its name).
CLIENT = "client"
#: A sideband's limits when none are given: a controller may send large sessions quickly.
DEFAULT_SIDEBAND_LIMITS = MessageLimits(4 * 1024 * 1024, 200.0)


class Admission(NamedTuple):
    """What to do with one party's message."""

    #: Handle the message (else it is dropped).
    admitted: bool
    #: The error to answer the party with, if it is due one.
    answer: RelayError | None
    #: The party has been flooding the call since this message: end the call.
    flooding: bool


class PartyGuards:
    """The message limits of every party of one call: the client's channel (:data:`CLIENT`)
    and each sideband (by its name), each guarded from its first message on."""

    def __init__(self, client: MessageLimits | None, sideband: MessageLimits | None,
                 clock: Callable[[], float]) -> None:
        self._client = client or MessageLimits()
        self._sideband = sideband or DEFAULT_SIDEBAND_LIMITS
        self._clock = clock
        self._guards: dict[str, MessageGuard] = {}

    def check(self, message: str | bytes, source: str) -> Admission:
        """Whether ``source`` may have ``message`` handled, and what it is told if not."""
        guard = self._guards.get(source)
        if guard is None:
            limits = self._client if source == CLIENT else self._sideband
            guard = self._guards[source] = MessageGuard(limits, self._clock)
        error = guard.check(message)
        if error is None:
            return Admission(True, None, False)
        return Admission(False, None if error is _SILENT else error, guard.flooding)

    def forget(self, source: str) -> None:
        """``source`` left the call (a sideband detached)."""
        self._guards.pop(source, None)
