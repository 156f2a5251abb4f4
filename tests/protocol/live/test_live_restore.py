"""A GPT-Live call's session rebuilt on a new upstream session, without I/O: which closes
reopen it, the ``session.start`` that restores the configuration and the conversation as
text (a valid ``openai.types.live`` client event), the client's one ``info``, the
timeline, and the resume notice; every event a client or sideband gets validates."""

from __future__ import annotations

import json
from typing import Any

from relay.protocol.live.live_core import RESTORED_CODE, RESUMED_CODE, LiveCore
from relay.protocol.live.live_restore import (
    MAX_HISTORY_CHARS,
    MAX_HISTORY_MESSAGES,
    LiveHistory,
    restore_start,
)

from .test_live_core import CLIENT, core, started, to_client, to_sideband

CONFIG = {"model": "gpt-live-1", "instructions": "Be brief.",
          "input": [{"type": "message", "role": "developer",
                     "content": [{"type": "input_text", "text": "The user is Ada."}]}]}


SESSION = {"id": "live_upstream", "expires_at": 2, "model": "gpt-live-1", "status": "active"}


def upstream(live: LiveCore, kind: str, **fields: Any) -> None:
    live.upstream_message(json.dumps({"type": kind, "event_id": "event_x", **fields}))


def a_turn(live: LiveCore, heard: str, said: str, at: int = 0) -> None:
    for word in heard.split():
        upstream(live, "session.input_transcript.delta", delta=word + " ",
                 start_ms=at, end_ms=at + 100)
    for word in said.split():
        upstream(live, "session.output_transcript.delta", delta=word + " ",
                 start_ms=at + 200, end_ms=at + 300)


def test_live_restore_rebuilds_the_session_with_its_conversation_as_text() -> None:
    clock = [0.0]
    live = LiveCore("rtc_u1_relayid", dict(CONFIG), max_playout_samples=24000,
                    clock=lambda: clock[0])
    live.start()
    live.channel_opened(0)
    live.attach_sideband("sb")
    live.drain_upstream()
    live.upstream_message(started())
    a_turn(live, "the code word is pineapple", "You said: the code word is pineapple")
    live.client_message(json.dumps({"type": "session.thinking.append", "event_id": "t1",
                                    "content": "Remember the code word."}))
    live.drain_upstream()  # sent: the session has it
    to_client(live)
    to_sideband(live, "sb")
    live.uplink_audio(bytes(48 * 1000))  # one second of the call's timeline
    assert live.upstream_lost(1006) == "upstream_closed (1006)"
    assert live.upstream_down
    clock[0] = 2.5
    live.uplink_audio(bytes(48 * 500))  # the gap's microphone: stale, dropped
    live.upstream_reopened("upstream_closed (1006)")
    start, *rest = live.drain_upstream()
    assert rest == [] and start["event_id"] == "relay_restore_1"
    CLIENT.validate_python(start)
    assert start["session"]["instructions"] == "Be brief."
    assert start["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert start["session"]["input"] == [
        CONFIG["input"][0],  # the configuration's own history first
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "the code word is pineapple"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "You said: the code word is pineapple"}]},
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "Remember the code word."}]}]
    # The new session's session.started is the relay's to take: the client gets one info.
    live.upstream_message(started("live_second"))
    [info] = to_client(live)
    assert to_sideband(live, "sb")[-1] == info
    assert info["type"] == "info" and info["code"] == RESTORED_CODE
    assert info["reason"] == "upstream_closed (1006)" and info["messages_restored"] == 3
    assert info["seconds_without_upstream"] == 2.5 and info["uplink_ms_dropped"] == 500
    assert live.upstream_session_id == "live_second" and live.idle
    assert live.session["id"] == "rtc_u1_relayid"
    assert live.stats.upstream_restores == 1
    # The new session's timeline starts at zero; the call's went on from one second.
    upstream(live, "session.input_transcript.delta", delta="hi", start_ms=40, end_ms=90)
    [delta] = to_client(live)
    assert (delta["start_ms"], delta["end_ms"]) == (1040, 1090)


def test_live_restore_only_after_a_close_worth_reopening() -> None:
    live = core()
    live.upstream_message(started())
    assert live.upstream_lost(1000) is None  # a normal close would only happen again
    assert live.upstream_lost(4001) is None
    assert not live.upstream_down
    upstream(live, "session.closed", reason="remote_hangup", session=SESSION, usage={"seconds": 1})
    assert live.upstream_lost(None) is None  # the session ended: so does the call
    live.upstream_closed(1000, "")
    assert [e["type"] for e in to_client(live)] == ["session.started", "session.closed"]


def test_live_restore_after_the_session_expired() -> None:
    live = core()
    live.upstream_message(started())
    to_client(live)
    upstream(live, "session.closed", reason="expired", session=SESSION, usage={"seconds": 3600})
    assert to_client(live) == []  # the session's limit, not the call's: not passed on
    assert live.upstream_lost(1000) == "session_expired"
    live.upstream_reopened("session_expired")
    live.upstream_message(started("live_next"))
    [info] = to_client(live)
    assert info["code"] == RESTORED_CODE and info["reason"] == "session_expired"


def test_live_restore_without_reopening_ends_with_upstream_closed() -> None:
    live = core()
    live.upstream_message(started())
    to_client(live)
    # RELAY_UPSTREAM_RECONNECT_SECONDS=0 or the window spent: the driver ends the call.
    live.upstream_closed(1006, "")
    [error] = to_client(live)
    assert error["type"] == "error" and error["error"]["code"] == "upstream_closed"


def test_live_restore_retries_without_the_history_it_was_refused() -> None:
    live = core(dict(CONFIG))
    live.drain_upstream()
    live.upstream_message(started())
    a_turn(live, "hello there", "You said: hello there")
    to_client(live)
    live.upstream_lost(None)
    live.upstream_reopened("upstream_closed")
    [start] = live.drain_upstream()
    upstream(live, "error", client_event_id=start["event_id"], error={
        "type": "invalid_request_error", "code": "input_too_long", "message": "Too long.",
        "client_event_id": start["event_id"]})
    [bare] = live.drain_upstream()
    CLIENT.validate_python(bare)
    assert bare["session"]["input"] == CONFIG["input"]  # the configuration's own only
    assert to_client(live) == []
    live.upstream_message(started("live_next"))
    [info] = to_client(live)
    assert info["history_refused"] is True and info["messages_restored"] == 0


def test_live_restore_keeps_updates_and_drops_refused_context() -> None:
    live = core({"model": "gpt-live-1", "delegation": {"type": "client"}})
    live.upstream_message(started())
    live.client_message(json.dumps({"type": "session.update", "event_id": "u1", "session": {
        "triggers": []}}))
    upstream(live, "session.updated", client_event_id="u1", session={
        **SESSION, "delegation": {"type": "client", "acknowledgement_delay_ms": 0}, "triggers": []})
    live.client_message(json.dumps({"type": "session.instructions.append", "event_id": "i1",
                                    "content": "Refused."}))
    live.drain_upstream()
    upstream(live, "error", client_event_id="i1", error={
        "type": "invalid_request_error", "code": "x", "message": "no", "client_event_id": "i1"})
    live.drain_upstream()
    live.upstream_lost(1011)
    live.upstream_reopened("upstream_closed (1011)")
    [start] = live.drain_upstream()
    assert start["session"]["triggers"] == []
    assert start["session"]["delegation"] == {"type": "client", "acknowledgement_delay_ms": 0}
    assert "input" not in start["session"]


def test_live_restore_history_is_bounded_newest_kept() -> None:
    history = LiveHistory()
    for n in range(200):
        history.observe({"type": "session.input_transcript.delta", "delta": f"question {n}"})
        history.observe({"type": "session.output_transcript.delta", "delta": f"answer {n}"})
    messages = history.messages()
    plan = restore_start({"model": "gpt-live-1", "input": CONFIG["input"]}, None, messages, 7)
    kept = plan.event["session"]["input"]
    assert len(kept) == MAX_HISTORY_MESSAGES and kept[0] == CONFIG["input"][0]
    assert kept[-1]["content"][0]["text"] == "answer 199"
    assert plan.restored == MAX_HISTORY_MESSAGES - 1 and plan.dropped == 400 - plan.restored
    long = [{"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "x" * (MAX_HISTORY_CHARS // 3)}]}] * 5
    assert restore_start({"model": "gpt-live-1"}, None, long, 1).restored == 3
    CLIENT.validate_python(plan.event)


def test_live_resume_notice_is_an_info_event_first_on_the_new_channel() -> None:
    live = core()
    live.attach_sideband("sb")
    live.upstream_message(started())
    live.channel_closed()
    upstream(live, "session.input_transcript.delta", delta="hi", start_ms=0, end_ms=50)
    live.peer_resumed({"via": "new_peer_connection", "resumes": 1})
    live.channel_opened(0)
    first, *held = to_client(live)
    assert first["type"] == "info" and first["code"] == RESUMED_CODE
    assert first["resumes"] == 1 and first["events_held"] == 2
    assert [e["type"] for e in held] == ["session.started", "session.input_transcript.delta"]
    assert to_sideband(live, "sb")[-1] == first
