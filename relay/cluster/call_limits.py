"""Limits of call creation, counted in one process or across a cluster through Redis.

Two limits, as in the security settings: how fast calls are created (token buckets per
client address and per client secret, a minute's worth held), and how many calls one
client secret holds at once. :class:`CallLimits` asks a :class:`LimitStore`:

- :class:`MemoryLimitStore` counts in this process (no Redis: each process its own).
- :class:`RedisLimitStore` counts across every relay sharing the Redis, each decision one
  Lua script (atomic in Redis). A call held toward its key's limit is a member of the
  sorted set ``relay:calls:<key>`` scored by an expiry its owner refreshes every third of
  ``RELAY_OWNER_TTL``; the script drops expired members first, so the calls of a relay
  that died stop counting within the TTL.
- :class:`FailOpenLimitStore` puts the two together: Redis, and this process's own
  counts while Redis cannot be reached.

Why fail open: a Redis outage should not stop a relay from taking the calls it can serve
alone, and per-process limits still bound every process (and ``RELAY_MAX_CALLS`` every
process's calls), so for the outage's length a client gets at most one limit's worth per
process instead of one per cluster. Failing closed would turn a Redis outage into a
whole-cluster outage of new calls.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis

from ..base.token_bucket import RateLimiter
from ..errors import RateLimited
from .outage import REDIS_ERRORS, RedisOutage

#: Redis key prefixes: rate buckets, and the calls each key holds.
RATE_KEY = "relay:rate:"
CALLS_KEY = "relay:calls:"

# A token bucket: a minute's worth of tokens, refilled continuously; Redis's own clock, so
# relays whose clocks disagree still share one bucket. Returns the seconds to wait (as
# text: Lua numbers would come back as integers), "0" when a token was taken.
_TAKE = """
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or capacity
local updated = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return tostring(wait)
"""

# Hold one of a key's call slots: drop expired members, refuse at the limit, else add the
# call with its expiry. Returns 1 when held, 0 at the limit.
_HOLD = """
local most, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= most then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return 1
"""

# Push the expiry of held calls (KEYS[i] holds ARGV[i + 1]) one TTL further; re-adds them
# if Redis lost them (restarted empty), so the counts come back with it.
_REFRESH = """
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(ttl) + 1)
end
return #KEYS
"""


class LimitStore(Protocol):
    """Where the limits are counted."""

    async def take(self, bucket: str, per_minute: float) -> float:
        """Take a token of ``bucket`` (``per_minute`` a minute, a minute's worth held):
        0.0 when taken, else the seconds until there is one (nothing taken)."""

    async def hold(self, key: str, call_id: str, most: int) -> bool:
        """Count ``call_id`` toward ``key``'s calls unless it has ``most``; True if held."""

    async def release(self, call_id: str) -> None:
        """Stop counting ``call_id`` (it ended); nothing if it was not held."""

    async def refresh(self) -> None:
        """Keep this process's held calls counting for another TTL."""


class MemoryLimitStore:
    """The limits of this process alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rates: dict[float, RateLimiter] = {}
        self._calls: dict[str, set[str]] = {}
        self._held: dict[str, str] = {}

    async def take(self, bucket: str, per_minute: float) -> float:
        """See :meth:`LimitStore.take`."""
        limiter = self._rates.get(per_minute)
        if limiter is None:
            limiter = self._rates[per_minute] = RateLimiter(per_minute, self._clock)
        return limiter.take(bucket)

    async def hold(self, key: str, call_id: str, most: int) -> bool:
        """See :meth:`LimitStore.hold`."""
        calls = self._calls.setdefault(key, set())
        if len(calls) >= most:
            return False
        calls.add(call_id)
        self._held[call_id] = key
        return True

    async def release(self, call_id: str) -> None:
        """See :meth:`LimitStore.release`."""
        key = self._held.pop(call_id, None)
        if key is None:
            return
        calls = self._calls[key]
        calls.discard(call_id)
        if not calls:
            del self._calls[key]

    async def refresh(self) -> None:
        """Nothing expires in memory."""


class RedisLimitStore:
    """The limits of every relay sharing one Redis. Raises what the Redis client raises
    when Redis cannot be reached (:class:`FailOpenLimitStore` handles that)."""

    def __init__(self, client: redis.Redis, ttl: float) -> None:
        self._redis = client
        self._ttl = ttl
        self._take = client.register_script(_TAKE)
        self._hold = client.register_script(_HOLD)
        self._refresh = client.register_script(_REFRESH)
        #: call id → the key it is held for, for refreshing and releasing.
        self._held: dict[str, str] = {}

    async def take(self, bucket: str, per_minute: float) -> float:
        """See :meth:`LimitStore.take`."""
        wait = await self._take(keys=[RATE_KEY + bucket],
                                args=[per_minute / 60.0, max(1.0, per_minute)])
        return float(wait)

    async def hold(self, key: str, call_id: str, most: int) -> bool:
        """See :meth:`LimitStore.hold`."""
        held = await self._hold(keys=[CALLS_KEY + key], args=[most, self._ttl, call_id])
        if held:
            self._held[call_id] = key
        return bool(held)

    async def release(self, call_id: str) -> None:
        """See :meth:`LimitStore.release`."""
        key = self._held.pop(call_id, None)
        if key is not None:
            await self._redis.zrem(CALLS_KEY + key, call_id)

    async def refresh(self) -> None:
        """See :meth:`LimitStore.refresh`."""
        held = list(self._held.items())
        if held:
            await self._refresh(keys=[CALLS_KEY + key for _, key in held],
                                args=[self._ttl, *(call_id for call_id, _ in held)])


class FailOpenLimitStore:
    """Redis while it answers, this process's own counts while it does not (the module
    docstring says why)."""

    def __init__(self, shared: RedisLimitStore, outage: RedisOutage) -> None:
        self._shared = shared
        self._local = MemoryLimitStore()
        self._outage = outage
        #: Calls held in this process's counts (during an outage) rather than in Redis.
        self._held_locally: set[str] = set()

    async def take(self, bucket: str, per_minute: float) -> float:
        """See :meth:`LimitStore.take`."""
        try:
            wait = await self._shared.take(bucket, per_minute)
        except REDIS_ERRORS as exc:
            self._outage.failed("counting a call's creation", exc)
            return await self._local.take(bucket, per_minute)
        self._outage.succeeded()
        return wait

    async def hold(self, key: str, call_id: str, most: int) -> bool:
        """See :meth:`LimitStore.hold`."""
        try:
            held = await self._shared.hold(key, call_id, most)
        except REDIS_ERRORS as exc:
            self._outage.failed("counting a key's calls", exc)
            held = await self._local.hold(key, call_id, most)
            if held:
                self._held_locally.add(call_id)
            return held
        self._outage.succeeded()
        return held

    async def release(self, call_id: str) -> None:
        """See :meth:`LimitStore.release`. Unreachable, the call's entry expires instead."""
        if call_id in self._held_locally:
            self._held_locally.discard(call_id)
            await self._local.release(call_id)
            return
        try:
            await self._shared.release(call_id)
        except REDIS_ERRORS as exc:
            self._outage.failed("releasing a key's call", exc)

    async def refresh(self) -> None:
        """See :meth:`LimitStore.refresh`; raises when Redis cannot be reached."""
        await self._shared.refresh()


class CallLimits:
    """The limits a new call must pass, whatever store counts them."""

    def __init__(self, store: LimitStore, *, per_address: float, per_key: float,
                 most_per_key: int) -> None:
        self.store = store
        self._per_address = per_address
        self._per_key = per_key
        self._most_per_key = most_per_key
        self._releases: set[asyncio.Task[None]] = set()

    async def admit(self, address: str | None, key: str | None) -> None:
        """Count one call creation from ``address`` with the client secret ``key`` (None:
        a server key); :class:`RateLimited` with ``retry_after`` if either is over."""
        wait = await self.store.take("address:" + (address or ""), self._per_address)
        if wait:
            raise RateLimited("Too many calls created from this address; try again later.",
                              retry_after=math.ceil(wait))
        if key is not None and (wait := await self.store.take("key:" + key, self._per_key)):
            raise RateLimited("Too many calls created with this key; try again later.",
                              retry_after=math.ceil(wait))

    async def hold(self, key: str | None, call_id: str) -> None:
        """Count the call ``call_id`` toward ``key``'s calls at once; :class:`RateLimited`
        (``too_many_calls``) at the limit. Server keys (None) are bounded only by the
        relay's own ``RELAY_MAX_CALLS``."""
        if key is not None and not await self.store.hold(key, call_id, self._most_per_key):
            raise RateLimited("This key has as many calls at once as it may have.",
                              code="too_many_calls")

    def release_soon(self, call_id: str) -> None:
        """Stop counting ``call_id``, from synchronous code (a call's end)."""
        task = asyncio.get_running_loop().create_task(self.store.release(call_id),
                                                      name=f"{call_id}:release")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def close(self) -> None:
        """Wait for the releases under way."""
        await asyncio.gather(*self._releases, return_exceptions=True)


def memory_limits(per_address: float, per_key: float, most_per_key: int) -> CallLimits:
    """Limits counted in this process alone."""
    return CallLimits(MemoryLimitStore(), per_address=per_address, per_key=per_key,
                      most_per_key=most_per_key)
