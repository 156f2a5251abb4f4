"""Owner ids and the call ids that name them."""

from __future__ import annotations

import math
import re

import pytest

from relay.cluster.ids import (
    CALL_CHARS,
    OWNER_CHARS,
    new_call_id,
    owner_id,
    owner_of,
    random_owner_id,
    worker_owner_id,
)


def test_ids_call_id_names_its_owner_and_looks_like_a_hosted_id() -> None:
    owner = random_owner_id()
    ids = {new_call_id(owner) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"rtc_u1_[A-Za-z0-9]{32}", call_id) for call_id in ids)
    assert {owner_of(call_id) for call_id in ids} == {owner}


def test_ids_keep_at_least_128_random_bits() -> None:
    assert (CALL_CHARS - OWNER_CHARS) * math.log2(62) >= 128
    owner = worker_owner_id(0)
    tails = {new_call_id(owner)[7 + OWNER_CHARS:] for _ in range(2000)}
    assert len(tails) == 2000 and len(set("".join(tails))) == 62


def test_ids_worker_owner_ids_are_stable_and_distinct_per_index() -> None:
    assert worker_owner_id(3) == worker_owner_id(3) == "w0000003"
    assert len({worker_owner_id(i) for i in range(64)}) == 64
    assert owner_id(redis=False, worker_index=5) == "w0000005"
    with pytest.raises(ValueError):
        worker_owner_id(-1)


def test_ids_with_redis_or_alone_each_start_takes_a_new_owner() -> None:
    for choice in ({"redis": True, "worker_index": 1}, {"redis": False, "worker_index": None}):
        first, second = owner_id(**choice), owner_id(**choice)
        assert first != second and re.fullmatch(r"[A-Za-z0-9]{8}", first)


@pytest.mark.parametrize("call_id", [
    "", "rtc_u1_", "rtc_u1_short", "rtc_u1_" + "a" * 31, "rtc_u1_" + "a" * 33,
    "rtc_u2_" + "a" * 32, "rtc_u1_" + "é" * 32, "rtc_u1_" + "a" * 31 + "-",
])
def test_ids_owner_of_refuses_what_is_not_a_call_id(call_id: str) -> None:
    assert owner_of(call_id) is None


def test_ids_a_call_id_needs_a_real_owner_id() -> None:
    for bad in ("short", "w000000/", "w00000000"):
        with pytest.raises(ValueError):
            new_call_id(bad)
