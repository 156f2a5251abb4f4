"""The registry of live calls: ids, the concurrency limit, lookup, and closing them all.

Calls are made on an in-memory upstream connector and never started (no offer, no
upstream session): the registry only creates, finds and forgets them.
"""

from __future__ import annotations

import re

import pytest

from relay.config import Settings
from relay.errors import CallNotFound, CapacityExceeded
from relay.server.registry import CallRegistry, new_call_id

from ..conftest import loopback_settings
from ..support.upstream import FakeConnector

SESSION = {"type": "realtime", "instructions": "be brief"}


def registry(**changes: object) -> CallRegistry:
    settings: Settings = loopback_settings(**changes)
    return CallRegistry(settings)


def test_new_call_id_is_shaped_like_the_hosted_ids() -> None:
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"rtc_u1_[A-Za-z0-9]{32}", call_id) for call_id in ids)


async def test_registry_new_registers_an_unstarted_call() -> None:
    calls = registry()
    connector = FakeConnector()
    call = calls.new(SESSION, connector, model="gpt-realtime-mini")
    try:
        assert re.fullmatch(r"rtc_u1_[A-Za-z0-9]{32}", call.id)
        assert calls.get(call.id) is call and len(calls) == 1
        assert call.model == "gpt-realtime-mini" and not call.closed
        assert connector.models == []  # nothing connects upstream before start()
    finally:
        await call.close()


async def test_registry_refuses_calls_over_max_calls() -> None:
    calls = registry(max_calls=2)
    connector = FakeConnector()
    first, second = calls.new(SESSION, connector), calls.new(SESSION, connector)
    with pytest.raises(CapacityExceeded) as caught:
        calls.new(SESSION, connector)
    assert caught.value.status == 503 and caught.value.code == "capacity_exceeded"
    assert len(calls) == 2
    await calls.close_all()
    assert first.closed and second.closed


async def test_registry_frees_a_slot_when_a_call_closes() -> None:
    calls = registry(max_calls=1)
    connector = FakeConnector()
    first = calls.new(SESSION, connector)
    with pytest.raises(CapacityExceeded):
        calls.new(SESSION, connector)
    await first.close()
    assert len(calls) == 0
    second = calls.new(SESSION, connector)
    assert second.id != first.id and len(calls) == 1
    await second.close()


async def test_registry_get_unknown_id_raises_call_not_found() -> None:
    calls = registry()
    call = calls.new(SESSION, FakeConnector())
    for unknown in ("rtc_u1_" + "a" * 32, "", call.id.upper()):
        with pytest.raises(CallNotFound) as caught:
            calls.get(unknown)
        assert caught.value.status == 404 and caught.value.code == "call_id_not_found"
    await call.close()


async def test_registry_get_a_closed_call_raises_call_not_found() -> None:
    calls = registry()
    call = calls.new(SESSION, FakeConnector())
    await call.close()
    with pytest.raises(CallNotFound):
        calls.get(call.id)


async def test_registry_close_all_closes_every_call() -> None:
    calls = registry(trim_memory=False)
    made = [calls.new(SESSION, FakeConnector()) for _ in range(5)]
    await calls.close_all("test over")
    assert len(calls) == 0 and list(calls) == []
    assert all(call.closed and call.close_reason == "test over" for call in made)
    await calls.close_all()  # nothing left: a no-op


async def test_registry_iteration_is_a_snapshot() -> None:
    calls = registry()
    made = [calls.new(SESSION, FakeConnector()) for _ in range(3)]
    seen = []
    for call in calls:  # closing removes the call from the registry mid-iteration
        await call.close()
        seen.append(call)
    assert seen == made and len(calls) == 0
