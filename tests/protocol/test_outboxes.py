"""What waits for each party of a call (relay.protocol.outboxes), with plain synchronous
calls: no event loop, no core."""

from __future__ import annotations

import json

from relay.errors import InvalidRequest
from relay.protocol.call_measures import CallStats
from relay.protocol.call_protocol import RESUMED_EVENT
from relay.protocol.events import error_event
from relay.protocol.flood import CLIENT
from relay.protocol.outboxes import (
    MAX_HELD_EVENTS,
    MAX_TRACKED_EVENTS,
    HeldMessages,
    PartyOutboxes,
)


def event(kind: str, **fields: object) -> dict[str, object]:
    return {"type": kind, **fields}


def error(code: str) -> dict[str, object]:
    return error_event(InvalidRequest("refused", code=code))


def test_outboxes_client_events_wait_for_the_channel_in_order() -> None:
    out = PartyOutboxes(CallStats())
    out.to_client(event("a"))
    out.to_client(event("b"))
    assert out.drain_client() == [] and out.client_held == 2
    out.channel_opened()
    assert [e["type"] for e in out.drain_client()] == ["a", "b"]
    assert out.drain_client() == []
    out.channel_closed()
    out.to_client(event("c"))
    assert out.drain_client() == []
    out.channel_opened()
    assert [e["type"] for e in out.drain_client()] == ["c"]


def test_outboxes_held_client_events_drop_the_oldest_past_the_most() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats)
    for n in range(MAX_HELD_EVENTS + 3):
        out.to_client(event("e", n=n))
    assert out.client_held == MAX_HELD_EVENTS and stats.held_dropped == 3
    out.channel_opened()
    drained = out.drain_client()
    assert drained[0]["n"] == 3 and drained[-1]["n"] == MAX_HELD_EVENTS + 2
    # An open channel holds nothing back, so nothing is dropped however many wait.
    for _ in range(MAX_HELD_EVENTS + 1):
        out.to_client(event("e"))
    assert stats.held_dropped == 3


def test_outboxes_open_from_the_start_for_a_websocket() -> None:
    out = PartyOutboxes(CallStats(), channel_open=True)
    out.to_client(event("a"))
    assert [e["type"] for e in out.drain_client()] == ["a"]


def test_outboxes_client_messages_fit_the_channel() -> None:
    out = PartyOutboxes(CallStats())
    audio = "A" * 4000
    out.to_client(event("conversation.item.retrieved", item={"content": [{"audio": audio}]}))
    out.channel_opened(max_message_size=1000)
    [message] = out.drain_client_messages()
    sent = json.loads(message)
    assert sent["item"]["content"][0]["audio"] is None
    assert sent["relay_omitted"] == ["item.content[0].audio"]


def test_outboxes_notices_follow_the_greeting_then_go_at_once() -> None:
    out = PartyOutboxes(CallStats(), channel_open=True)
    out.notify_client(event("relay.notice", n=1))
    assert out.drain_client() == []
    out.to_client(event("session.created"))
    out.greeted()
    out.notify_client(event("relay.notice", n=2))
    assert [(e["type"], e.get("n")) for e in out.drain_client()] == [
        ("session.created", None), ("relay.notice", 1), ("relay.notice", 2)]


def test_outboxes_resume_notice_goes_first_and_to_every_sideband() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats)
    out.attach("guard")
    out.to_client(event("a"))
    out.to_client(event("b"))
    out.resumed({"ice_seconds": 0.5})
    out.channel_opened()
    drained = out.drain_client()
    assert [e["type"] for e in drained] == [RESUMED_EVENT, "a", "b"]
    assert drained[0]["events_held"] == 2 and drained[0]["ice_seconds"] == 0.5
    assert out.drain_sideband("guard") == [drained[0]]
    assert stats.measures.events[("to_client", "other")] == 3
    assert ("to_sideband", "other") not in stats.measures.events


def test_outboxes_resume_notice_of_a_family_goes_first_and_to_every_sideband() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats)
    out.attach("guard")
    out.to_client(event("a"))
    notice = event("info", code="call_resumed", events_held=out.client_held)
    out.resumed_with(notice)
    out.to_client(event("b"))
    out.channel_opened()
    drained = out.drain_client()
    assert drained == [notice, event("a"), event("b")]
    assert drained[0]["events_held"] == 1
    assert out.drain_sideband("guard") == [notice]
    counted = stats.measures.events
    assert sum(n for (party, _), n in counted.items() if party == "to_client") == 3
    assert not any(party == "to_sideband" for party, _ in counted)


def test_outboxes_broadcast_reaches_the_client_and_every_sideband_counted() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats, channel_open=True)
    out.attach("one")
    out.attach("two")
    out.broadcast(event("response.done"))
    out.broadcast(event("session.updated"), to_client=False)
    assert [e["type"] for e in out.drain_client()] == ["response.done"]
    for name in ("one", "two"):
        assert [e["type"] for e in out.drain_sideband(name)] == [
            "response.done", "session.updated"]
        assert out.drain_sideband(name) == []
    assert stats.measures.events[("to_sideband", "response.done")] == 2
    assert stats.measures.events[("to_client", "response.done")] == 1
    assert ("to_client", "session.updated") not in stats.measures.events


def test_outboxes_reply_goes_to_its_party_alone_and_errors_count_once() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats, channel_open=True)
    out.attach("guard")
    out.reply(CLIENT, error("for_client"))
    out.reply("guard", error("for_guard"))
    out.reply("gone", error("for_nobody"))
    assert [e["error"]["code"] for e in out.drain_client()] == ["for_client"]
    assert [e["error"]["code"] for e in out.drain_sideband("guard")] == ["for_guard"]
    assert stats.measures.errors == {"for_client": 1, "for_guard": 1}
    assert stats.measures.last_error == {"code": "for_guard", "message": "refused"}


def test_outboxes_a_detached_sideband_gets_nothing_more() -> None:
    out = PartyOutboxes(CallStats())
    out.attach("guard")
    out.broadcast(event("a"))
    out.detach("guard")
    out.broadcast(event("b"))
    out.reflect(event("c"))
    assert out.drain_sideband("guard") == [] and not out.has_sidebands
    out.detach("guard")  # twice is fine


def test_outboxes_reflected_media_reaches_sidebands_uncounted() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats)
    out.reflect(event("session.input_audio.append"))  # nobody attached: nothing kept
    out.attach("guard")
    assert out.has_sidebands
    out.reflect(event("session.input_audio.append"))
    assert [e["type"] for e in out.drain_sideband("guard")] == ["session.input_audio.append"]
    assert stats.measures.events == {}


def test_outboxes_senders_route_errors_to_the_sideband_that_sent_the_command() -> None:
    out = PartyOutboxes(CallStats())
    out.sent_by("evt_1", "guard")
    out.sent_by("evt_2", CLIENT)  # the client's are the call's: not remembered
    out.sent_by(None, "guard")
    assert out.sender("evt_2") is None and out.sender(None) is None
    assert out.sender("evt_1") == "guard"
    assert out.sender("evt_1") is None  # an answer is routed once


def test_outboxes_senders_remember_only_the_newest() -> None:
    out = PartyOutboxes(CallStats())
    for n in range(MAX_TRACKED_EVENTS + 1):
        out.sent_by(f"evt_{n}", "guard")
    assert out.sender("evt_0") is None
    assert out.sender("evt_1") == "guard"
    assert out.sender(f"evt_{MAX_TRACKED_EVENTS}") == "guard"


def test_outboxes_upstream_keeps_order_and_counts_what_it_drains() -> None:
    stats = CallStats()
    out = PartyOutboxes(stats, uncounted_upstream=("session.input_audio.append",))
    assert not out.upstream_pending and out.drain_upstream() == []
    out.to_upstream(event("session.input_audio.append"))
    out.to_upstream(event("response.create"))
    out.upstream_first([event("session.update"), event("conversation.item.create")])
    assert out.upstream_pending
    assert stats.measures.events == {}  # counted as they go, not as they are queued
    assert [e["type"] for e in out.drain_upstream()] == [
        "session.update", "conversation.item.create", "session.input_audio.append",
        "response.create"]
    assert not out.upstream_pending
    assert stats.measures.events == {("to_upstream", "session.update"): 1,
                                     ("to_upstream", "conversation.item.create"): 1,
                                     ("to_upstream", "response.create"): 1}


def test_outboxes_upstream_drops_stale_events_of_one_type() -> None:
    out = PartyOutboxes(CallStats())
    for kind in ("input_audio_buffer.append", "response.create", "input_audio_buffer.append"):
        out.to_upstream(event(kind))
    out.drop_upstream("input_audio_buffer.append")
    assert [e["type"] for e in out.drain_upstream()] == ["response.create"]


def test_held_messages_hold_only_once_asked_and_release_in_order() -> None:
    held = HeldMessages()
    assert not held.holding and held.release() == []
    held.hold()
    assert held.add("one") and held.add(b"two")
    held.hold()  # twice keeps what is held
    assert held.holding
    assert held.release() == ["one", b"two"]
    assert not held.holding and held.release() == []


def test_held_messages_refuse_past_the_most() -> None:
    held = HeldMessages()
    held.hold()
    for n in range(MAX_HELD_EVENTS):
        assert held.add(str(n))
    assert not held.add("one too many")
    released = held.release()
    assert len(released) == MAX_HELD_EVENTS and released[-1] == str(MAX_HELD_EVENTS - 1)
