"""Limits of call creation: rates, calls at once, body sizes, each in the API's error shape."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession

from relay.base.token_bucket import RateLimiter
from relay.cluster.call_limits import CallLimits, MemoryLimitStore
from relay.errors import CapacityExceeded, RateLimited
from relay.server.app import NODE, REGISTRY, UPSTREAM

from ..conftest import base_url

SDP_HEADERS = {"Content-Type": "application/sdp"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limits_bucket_allows_a_minutes_worth_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock)  # one every 10 s, six at once
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # buckets are per key
    clock.now += 10
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(10.0)


async def test_limits_call_rate_says_when_to_retry() -> None:
    clock = Clock()
    limits = CallLimits(MemoryLimitStore(clock), per_address=60, per_key=1, most_per_key=10)
    await limits.admit("10.0.0.1", "key")
    with pytest.raises(RateLimited) as info:
        await limits.admit("10.0.0.1", "key")
    assert info.value.status == 429 and info.value.retry_after == 60
    await limits.admit("10.0.0.1", None)  # no client secret: only the address counts


async def _post(url: str, data: bytes | str, status: int) -> tuple[dict[str, str], dict]:
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data=data, headers=SDP_HEADERS) as r:
            assert r.status == status, await r.text()
            body = await r.json()
            assert set(body["error"]) == {"message", "type", "code", "param"}
            return dict(r.headers), body["error"]


async def test_limits_address_rate_is_a_429_with_retry_after(relay_factory) -> None:
    server = await relay_factory(call_rate_per_address=1)
    await _post(base_url(server), "v=0", 400)  # the bad offer still took the minute's call
    headers, error = await _post(base_url(server), "v=0", 429)
    assert error["code"] == "rate_limit_exceeded" and 55 <= int(headers["Retry-After"]) <= 60


async def test_limits_full_relay_is_a_503_with_retry_after(relay_factory) -> None:
    server = await relay_factory(max_calls=1)
    call = server.app[REGISTRY].new({"type": "realtime"}, server.app[UPSTREAM])
    try:
        headers, error = await _post(base_url(server), "v=0", 503)
        assert error["code"] == "capacity_exceeded" and headers["Retry-After"] == "5"
        with pytest.raises(CapacityExceeded):
            server.app[REGISTRY].new({"type": "realtime"}, server.app[UPSTREAM])
    finally:
        await call.close("test")


async def test_limits_calls_at_once_per_key(relay_factory) -> None:
    server = await relay_factory(max_calls_per_key=2)
    registry, upstream = server.app[REGISTRY], server.app[UPSTREAM]
    node = server.app[NODE]
    limits = node.limits

    async def new(key: str):
        call_id = node.new_call_id()
        await limits.hold(key, call_id)
        return registry.new({"type": "realtime"}, upstream, call_id=call_id)

    calls = [await new("k") for _ in range(2)]
    with pytest.raises(RateLimited) as info:
        await new("k")
    assert info.value.status == 429 and info.value.code == "too_many_calls"
    other = await new("other")
    await calls[0].close("test")
    await limits.close()  # the ended call's release is under way
    calls.append(await new("k"))
    for call in (*calls, other):
        await call.close("test")
    assert len(registry) == 0


async def test_limits_bodies_and_offers_over_their_size_are_413s(relay_factory) -> None:
    server = await relay_factory(max_body_bytes=4096, max_sdp_bytes=2048)
    _, error = await _post(base_url(server), "v=0\r\n" + "a=x\r\n" * 500, 413)
    assert error["code"] == "payload_too_large" and error["param"] == "sdp"
    _, error = await _post(base_url(server), b"v=0\r\n" + b"a=x\r\n" * 2000, 413)
    assert error["type"] == "invalid_request_error"
