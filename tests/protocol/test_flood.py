"""Message size and rate on a call (relay.protocol.flood), through the call core."""

from __future__ import annotations

import json

from relay.protocol.flood import CLIENT, MessageGuard, MessageLimits, PartyGuards
from relay.protocol.realtime.call_core import CallCore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def core(clock: Clock) -> CallCore:
    c = CallCore("rtc_flood", {"type": "realtime"}, max_playout_samples=24000, clock=clock,
                 client_limits=MessageLimits(max_bytes=1000, per_second=10, flood_drops=50),
                 sideband_limits=MessageLimits(max_bytes=2000, per_second=10, flood_drops=50))
    c.start()
    c.drain_upstream()
    c.channel_opened()
    return c


EVENT = json.dumps({"type": "response.create"})


def test_flood_an_oversized_message_gets_an_error_and_the_call_goes_on() -> None:
    c = core(Clock())
    c.client_message(json.dumps({"type": "conversation.item.create", "pad": "x" * 2000}))
    [error] = c.drain_client()
    assert error["error"]["code"] == "message_too_large"
    assert c.drain_upstream() == []
    c.client_message(EVENT)
    assert [e["type"] for e in c.drain_upstream()] == ["response.create"]
    assert c.end_reason is None


def test_flood_over_the_rate_one_error_per_run_then_the_rate_recovers() -> None:
    clock = Clock()
    c = core(clock)
    for _ in range(15):
        c.client_message(EVENT)
    assert len(c.drain_upstream()) == 10
    errors = c.drain_client()
    assert [e["error"]["code"] for e in errors] == ["rate_limit_exceeded"]
    clock.now += 1.0
    c.client_message(EVENT)
    assert len(c.drain_upstream()) == 1 and c.end_reason is None


def test_flood_a_sustained_flood_ends_only_that_call() -> None:
    clock = Clock()
    flooding, quiet = core(clock), core(clock)
    for _ in range(200):
        flooding.client_message(EVENT)
    quiet.client_message(EVENT)
    assert flooding.end_reason == "client flooded the call"
    assert quiet.end_reason is None


def test_flood_sidebands_have_their_own_limits() -> None:
    clock = Clock()
    c = core(clock)
    c.attach_sideband("sideband-1")
    for _ in range(10):
        c.client_message(EVENT)
    c.client_message(json.dumps({"type": "session.update", "session": {"pad": "x" * 1500}}),
                     "sideband-1")
    assert c.drain_sideband("sideband-1") == []  # larger than the client's, within its own
    assert len(c.drain_upstream()) == 11
    c.client_message("x" * 2001, "sideband-1")
    [error] = c.drain_sideband("sideband-1")
    assert error["error"]["code"] == "message_too_large"
    assert c.drain_client() == []  # the answer went to the sideband only


def test_flood_guard_burst_is_at_least_ten() -> None:
    clock = Clock()
    guard = MessageGuard(MessageLimits(per_second=1), clock)
    assert [guard.check("x") for _ in range(10)] == [None] * 10
    assert guard.check("x") is not None


def test_flood_size_counts_utf8_bytes_not_characters() -> None:
    guard = MessageGuard(MessageLimits(max_bytes=1000), clock=lambda: 0.0)
    assert guard.check("é" * 500) is None  # 1000 bytes
    error = guard.check("é" * 501)
    assert error is not None and error.code == "message_too_large"
    assert guard.check("😀" * 300) is not None  # 1200 bytes in 300 characters
    assert guard.check(b"x" * 1000) is None


def test_party_guards_keep_each_party_to_its_own_limits() -> None:
    now = [0.0]
    parties = PartyGuards(MessageLimits(max_bytes=10, per_second=10.0),
                          MessageLimits(max_bytes=100, per_second=10.0), lambda: now[0])
    assert parties.check("x" * 50, CLIENT).answer is not None  # over the client's size
    assert parties.check("x" * 50, "sideband-1") == (True, None, False)
    for _ in range(10):
        assert parties.check("x", CLIENT).admitted
    first = parties.check("x", CLIENT)
    assert not first.admitted and first.answer is not None
    assert first.answer.code == "rate_limit_exceeded"
    # The rest of the run is dropped without an answer, and the sideband is untouched.
    assert parties.check("x", CLIENT) == (False, None, False)
    assert parties.check("x", "sideband-1").admitted


def test_party_guards_say_when_a_party_floods_and_forget_a_party_that_left() -> None:
    parties = PartyGuards(None, MessageLimits(per_second=10.0, flood_drops=3), lambda: 0.0)
    verdicts = [parties.check("x", "sideband-1") for _ in range(13)]
    assert [v.flooding for v in verdicts[10:]] == [False, False, True]
    parties.forget("sideband-1")
    assert parties.check("x", "sideband-1") == (True, None, False)
