"""Restoring a lost upstream session: the conversation mirror, the restore events, and the
call core's side of a rollover (no I/O, a fake clock)."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

from relay.protocol.realtime.call_core import RESTORED_EVENT
from relay.protocol.realtime.upstream_restore import (
    ConversationMirror,
    restorable_item,
    restore_items,
)

from .test_call_core import client_types, delta, opened, start_response, up

CLIENT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeClientEvent)
SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)


def user_text(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
            "role": "user", "content": [{"type": "input_text", "text": text}]}


def added_and_done(item: dict[str, Any], previous: str | None) -> list[dict[str, Any]]:
    return [{"type": kind, "event_id": "e", "previous_item_id": previous, "item": item}
            for kind in ("conversation.item.added", "conversation.item.done")]


def test_conversation_mirror_keeps_order_deletions_and_transcripts() -> None:
    mirror = ConversationMirror()
    audio = {"id": "u1", "type": "message", "role": "user",
             "content": [{"type": "input_audio", "transcript": None}]}
    for event in [*added_and_done(audio, None), *added_and_done(user_text("u2", "b"), "u1"),
                  *added_and_done(user_text("u0", "a"), None)]:
        mirror.observe(event)
    # u0 came with previous_item_id None but after others: appended (no position known).
    assert mirror.ids() == ["u1", "u2", "u0"]
    mirror.observe({"type": "conversation.item.added", "previous_item_id": "u1",
                    "item": user_text("u1b", "between")})
    mirror.observe({"type": "conversation.item.deleted", "item_id": "u0"})
    mirror.observe({"type": "conversation.item.input_audio_transcription.completed",
                    "item_id": "u1", "content_index": 0, "transcript": "hello there"})
    assert mirror.ids() == ["u1", "u1b", "u2"]
    assert mirror.items()[0]["content"][0]["transcript"] == "hello there"


def test_conversation_mirror_drops_oldest_beyond_its_bound() -> None:
    mirror = ConversationMirror(max_items=3)
    for n in range(5):
        mirror.observe({"type": "conversation.item.done", "item": user_text(f"u{n}", "x")})
    assert mirror.ids() == ["u2", "u3", "u4"] and mirror.overflowed == 2


def test_restorable_item_follows_the_documented_rules() -> None:
    assistant = {"id": "a1", "type": "message", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_audio", "transcript": "You said: hi"}]}
    assert restorable_item(assistant) == {
        "id": "a1", "type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": "You said: hi"}]}
    heard = {"id": "u1", "type": "message", "role": "user",
             "content": [{"type": "input_audio", "transcript": "hi"}]}
    assert restorable_item(heard)["content"] == [{"type": "input_text", "text": "hi"}]  # type: ignore[index]
    unheard = {"id": "u2", "type": "message", "role": "user",
               "content": [{"type": "input_audio", "transcript": None}]}
    assert restorable_item(unheard) is None
    call = {"id": "f1", "type": "function_call", "call_id": "c1", "name": "get_weather",
            "arguments": "{}", "status": "completed"}
    assert restorable_item(call) == {"id": "f1", "type": "function_call", "call_id": "c1",
                                     "name": "get_weather", "arguments": "{}"}
    assert restorable_item({"id": "m1", "type": "mcp_call"}) is None


def test_restore_items_are_valid_client_events_in_order() -> None:
    mirror = ConversationMirror()
    mirror.observe({"type": "conversation.item.done", "item": user_text("u1", "one")})
    mirror.observe({"type": "conversation.item.done", "item": {
        "id": "a1", "type": "message", "role": "assistant",
        "content": [{"type": "output_audio", "transcript": "You said: one"}]}})
    mirror.observe({"type": "conversation.item.done", "item": {
        "id": "u2", "type": "message", "role": "user",
        "content": [{"type": "input_audio", "transcript": None}]}})
    plan = restore_items(mirror, 1)
    assert plan.item_ids == ["u1", "a1"] and plan.lost_item_ids == ["u2"]
    for event in plan.events:
        CLIENT_EVENT.validate_python(event)
    assert plan.events[1]["previous_item_id"] == "u1"


def test_call_core_rollover_restores_session_and_items_and_tells_the_client_once() -> None:
    core = opened({"type": "realtime", "instructions": "be brief"})
    core.start()
    core.drain_upstream()
    up(core, "session.created", session={"type": "realtime"})
    up(core, "session.updated", session={"type": "realtime", "instructions": "be brief",
                                         "id": "sess_1", "model": "m"})
    for event in added_and_done(user_text("u1", "the code word is pineapple"), None):
        core.upstream_message(json.dumps(event))
    start_response(core, "r1", "a1")
    delta(core, "r1", "a1", 5)
    core.drain_client()
    # The upstream says its session expired, then closes.
    up(core, "error", error={"type": "invalid_request_error", "code": "session_expired",
                             "message": "Your session hit the maximum duration."})
    assert core.upstream_expired and core.drain_client() == []
    assert core.upstream_lost(1001) == "session_expired"
    [done] = core.drain_client()
    SERVER_EVENT.validate_python(done)
    assert done["type"] == "response.done" and done["response"]["status"] == "failed"
    core.uplink_audio(b"\x00\x00" * 480)  # no upstream: dropped, not queued
    assert core.drain_upstream() == [] and core.stats.uplink_dropped_samples == 480
    core.upstream_reopened("session_expired")
    update, create = core.drain_upstream()
    assert update["type"] == "session.update"
    assert update["session"]["instructions"] == "be brief"
    assert "id" not in update["session"] and "model" not in update["session"]
    assert create["item"]["id"] == "u1"
    # The new session's answers are the relay's own, and not passed on ...
    up(core, "session.created", session={"type": "realtime"})
    up(core, "session.updated", session={"type": "realtime", "instructions": "be brief"})
    for event in added_and_done(create["item"], None):
        core.upstream_message(json.dumps(event))
    # ... but one event says what happened, once all is restored; then the call goes on.
    assert pull_types(core) == [RESTORED_EVENT, "output_audio_buffer.started"]
    report = [e for e in core.drain_client()]
    assert report == []
    up(core, "rate_limits.updated", rate_limits=[])
    assert client_types(core) == ["rate_limits.updated"]


def pull_types(core: Any) -> list[str]:
    core.next_frame()  # the lost reply's queued audio still plays
    events = core.drain_client()
    restored = [e for e in events if e["type"] == RESTORED_EVENT]
    if restored:
        assert restored[0]["items_restored"] == ["u1"]
        assert restored[0]["reason"] == "session_expired"
    return [e["type"] for e in events]


def test_call_core_restore_reports_a_refused_item_and_goes_on() -> None:
    core = opened()
    core.upstream_message(json.dumps({"type": "conversation.item.done",
                                      "item": user_text("u1", "x")}))
    core.drain_client()
    assert core.upstream_lost(1000) is None  # a normal close: the call is to end
    assert core.upstream_lost(None) == "upstream_closed"
    core.upstream_reopened("upstream_closed")
    update, create = core.drain_upstream()
    up(core, "session.updated", session={"type": "realtime"})
    up(core, "error", error={"type": "invalid_request_error", "code": "invalid_value",
                             "message": "no", "event_id": create["event_id"]})
    [report] = core.drain_client()
    assert report["type"] == RESTORED_EVENT and report["items_failed"] == ["u1"]
