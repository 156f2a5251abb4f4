"""Limits counted in Redis across relays, against a real redis-server; and in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relay.cluster.call_limits import (
    CallLimits,
    FailOpenLimitStore,
    MemoryLimitStore,
    RedisLimitStore,
)
from relay.cluster.directory import RedisDirectory
from relay.cluster.outage import REDIS_ERRORS, RedisOutage
from relay.errors import RateLimited, RoutingUnavailable

from ..support.redis import RedisServer


@pytest.fixture
async def clients(redis_db: RedisServer) -> AsyncIterator[list[redis.Redis]]:
    """Two clients of the test's Redis, as two relays would have."""
    made = [redis.Redis.from_url(redis_db.url, socket_timeout=1, socket_connect_timeout=1,
                                 retry=Retry(NoBackoff(), 0)) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


def limits(client: redis.Redis, ttl: float = 15.0, most: int = 2) -> CallLimits:
    store = FailOpenLimitStore(RedisLimitStore(client, ttl), RedisOutage())
    return CallLimits(store, per_address=3, per_key=60, most_per_key=most)


async def test_limits_redis_rate_is_one_bucket_for_every_relay(clients) -> None:
    a, b = limits(clients[0]), limits(clients[1])
    await a.admit("10.0.0.1", None)
    await b.admit("10.0.0.1", None)
    await a.admit("10.0.0.1", None)
    with pytest.raises(RateLimited) as info:
        await b.admit("10.0.0.1", None)  # the address's 3 a minute, spent on two relays
    assert info.value.retry_after == 20
    await b.admit("10.0.0.2", None)  # another address has its own bucket


async def test_limits_redis_calls_at_once_hold_across_relays_until_released(clients) -> None:
    a, b = limits(clients[0]), limits(clients[1])
    await a.hold("key", "call-1")
    await b.hold("key", "call-2")
    with pytest.raises(RateLimited) as info:
        await a.hold("key", "call-3")
    assert info.value.code == "too_many_calls"
    await b.hold("other", "call-4")
    await a.hold(None, "call-5")  # server keys: no per-key count
    a.release_soon("call-1")
    await a.close()
    await b.hold("key", "call-3")


async def test_limits_redis_calls_of_a_relay_that_stops_refreshing_expire(clients) -> None:
    dead, live = RedisLimitStore(clients[0], ttl=1.0), RedisLimitStore(clients[1], ttl=1.0)
    assert await dead.hold("key", "dead-call", 2)
    assert await live.hold("key", "live-call", 2)
    assert not await live.hold("key", "third", 2)
    for _ in range(4):  # the live relay refreshes every third of the TTL; the dead one not
        await asyncio.sleep(0.35)
        await live.refresh()
    assert await live.hold("key", "third", 2)  # the dead relay's call stopped counting
    assert not await live.hold("key", "fourth", 2)  # the refreshed one still counts


async def test_limits_fail_open_counts_in_process_while_redis_is_down(
        clients, redis_db: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    a = limits(clients[0], most=1)
    await a.hold("key", "held-in-redis")
    redis_db.stop()
    # Redis is gone: this process counts alone, with the same limits.
    await a.hold("key", "held-here")
    with pytest.raises(RateLimited):
        await a.hold("key", "one-too-many")
    for _ in range(3):
        await a.admit("10.0.0.9", None)
    with pytest.raises(RateLimited):
        await a.admit("10.0.0.9", None)
    a.release_soon("held-here")
    a.release_soon("held-in-redis")  # unreachable: it will expire instead
    await a.close()
    await a.hold("key", "again")
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request


async def test_limits_memory_store_counts_in_process() -> None:
    store = MemoryLimitStore()
    assert await store.hold("key", "a", 1)
    assert not await store.hold("key", "b", 1)
    await store.release("a")
    await store.release("never-held")
    assert await store.hold("key", "b", 1)


async def test_directory_redis_entries_expire_unless_refreshed(clients) -> None:
    outage = RedisOutage()
    one, two = RedisDirectory(clients[0], 1.0, outage), RedisDirectory(clients[1], 1.0, outage)
    await one.register("ownerAAA", "http://10.0.0.1:8090")
    await one.register("ownerBBB", "http://10.0.0.2:8090")
    assert await two.lookup("ownerAAA") == "http://10.0.0.1:8090"
    for _ in range(4):
        await asyncio.sleep(0.35)
        await one.refresh("ownerAAA", "http://10.0.0.1:8090")
    assert await two.lookup("ownerAAA") == "http://10.0.0.1:8090"
    assert await two.lookup("ownerBBB") is None
    await one.unregister("ownerAAA")
    assert await two.lookup("ownerAAA") is None


async def test_directory_redis_down_is_routing_unavailable(clients, redis_db) -> None:
    outage = RedisOutage()
    directory = RedisDirectory(clients[0], 5.0, outage)
    redis_db.stop()
    with pytest.raises(RoutingUnavailable) as info:
        await directory.lookup("ownerAAA")
    assert info.value.status == 503 and info.value.code == "routing_unavailable"
    assert outage.down
    with pytest.raises(REDIS_ERRORS):
        await directory.register("ownerAAA", "http://10.0.0.1:8090")
