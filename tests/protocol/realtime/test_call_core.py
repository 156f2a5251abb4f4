"""The call state machine: routing, holding, playout events and barge-in, on a fake clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from relay.audio import FRAME_BYTES, FRAME_SAMPLES
from relay.errors import AgentFailed
from relay.protocol.realtime.call_core import CallCore

PCM_20MS = b"\x01\x02" * FRAME_SAMPLES


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_core(session: dict[str, Any] | None = None, max_seconds: float = 60) -> CallCore:
    core = CallCore("rtc_test", session or {"type": "realtime"},
                    max_playout_samples=int(max_seconds * 24000), clock=FakeClock())
    return core


def up(core: CallCore, kind: str, **fields: Any) -> None:
    core.upstream_message(json.dumps({"type": kind, **fields}))


def delta(core: CallCore, response_id: str, item_id: str, frames: int) -> None:
    up(core, "response.output_audio.delta", response_id=response_id, item_id=item_id,
       output_index=0, content_index=0, delta=base64.b64encode(PCM_20MS * frames).decode())


def start_response(core: CallCore, response_id: str, item_id: str) -> None:
    up(core, "response.created", response={"id": response_id, "status": "in_progress"})
    up(core, "response.output_item.added", response_id=response_id, output_index=0,
       item={"id": item_id, "type": "message", "role": "assistant"})


def pull(core: CallCore, frames: int) -> bytes:
    return b"".join(core.next_frame() for _ in range(frames))


def client_types(core: CallCore) -> list[str]:
    return [e["type"] for e in core.drain_client()]


def opened(session: dict[str, Any] | None = None) -> CallCore:
    core = make_core(session)
    core.channel_opened()
    return core


def test_call_core_start_sends_session_update_with_pinned_formats() -> None:
    core = make_core({"type": "realtime", "instructions": "be brief"})
    core.start()
    [event] = core.drain_upstream()
    assert event["type"] == "session.update"
    assert event["session"]["instructions"] == "be brief"
    assert event["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_call_core_holds_events_until_channel_opens_in_order() -> None:
    core = make_core()
    core.start()
    up(core, "session.created", session={"type": "realtime"})
    up(core, "session.updated", session={"type": "realtime"})
    up(core, "rate_limits.updated", rate_limits=[])
    assert core.drain_client() == []
    core.channel_opened()
    assert client_types(core) == ["session.created", "rate_limits.updated"]


def test_call_core_passes_unknown_events_and_fields_untouched() -> None:
    core = opened()
    raw = {"type": "response.future_thing", "event_id": "e1", "obfuscation": "abc", "x": [1]}
    core.upstream_message(json.dumps(raw))
    assert core.drain_client() == [raw]


def test_call_core_never_forwards_audio_deltas() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    core.drain_client()
    delta(core, "r1", "i1", 3)
    assert core.drain_client() == []
    assert core.playout.queued == 3 * FRAME_SAMPLES


@pytest.mark.parametrize("message", ["not json", "[1,2]", '{"no":"type"}', b"\xff\xfe"])
def test_call_core_answers_bad_client_messages_with_error_and_goes_on(message: Any) -> None:
    core = opened()
    core.client_message(message)
    [event] = core.drain_client()
    assert event["type"] == "error" and event["error"]["type"] == "invalid_request_error"
    core.client_message(json.dumps({"type": "response.create"}))
    assert core.drain_upstream() == [{"type": "response.create"}]


def test_call_core_pins_formats_in_client_session_updates() -> None:
    core = opened()
    core.client_message(json.dumps({"type": "session.update", "event_id": "c1",
                                    "session": {"input_audio_format": "g711_ulaw",
                                                "instructions": "x"}}))
    [event] = core.drain_upstream()
    assert event["event_id"] == "c1"
    assert event["session"]["audio"]["input"]["format"]["type"] == "audio/pcm"
    assert event["session"]["instructions"] == "x"


def test_call_core_rejects_audio_appends_on_the_data_channel() -> None:
    core = opened()
    core.client_message(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA",
                                    "event_id": "c9"}))
    assert core.drain_upstream() == []
    [event] = core.drain_client()
    assert event["type"] == "error" and event["error"]["event_id"] == "c9"


def test_call_core_uplink_audio_becomes_append_events() -> None:
    core = make_core()
    core.uplink_audio(b"\x00\x01" * 960)
    [event] = core.drain_upstream()
    assert event == {"type": "input_audio_buffer.append",
                     "audio": base64.b64encode(b"\x00\x01" * 960).decode()}
    assert core.stats.uplink_samples == 960


def test_call_core_started_on_first_frame_and_stopped_after_done_and_drained() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 5)
    core.drain_client()
    assert core.next_frame() == PCM_20MS
    assert client_types(core) == ["output_audio_buffer.started"]
    up(core, "response.done", response={"id": "r1", "status": "completed"})
    assert client_types(core) == ["response.done"]  # 4 frames still queued
    pull(core, 3)
    assert core.drain_client() == []
    pull(core, 1)
    assert client_types(core) == ["output_audio_buffer.stopped"]
    assert core.next_frame() == bytes(FRAME_BYTES)  # silence afterwards


def test_call_core_stopped_waits_for_response_done_when_audio_drains_first() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 2)
    pull(core, 4)
    core.drain_client()
    up(core, "response.output_audio.done", response_id="r1", item_id="i1")
    up(core, "response.done", response={"id": "r1", "status": "completed"})
    assert client_types(core) == ["response.output_audio.done", "response.done",
                                  "output_audio_buffer.stopped"]


def test_call_core_barge_in_truncates_at_audio_sent_and_drops_late_deltas() -> None:
    core = opened()
    core.start()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 50)  # 1 s received
    pull(core, 13)  # 260 ms sent
    core.drain_client()
    core.drain_upstream()
    up(core, "input_audio_buffer.speech_started", audio_start_ms=1000, item_id="u2")
    assert client_types(core) == ["input_audio_buffer.speech_started",
                                  "output_audio_buffer.cleared"]
    assert core.drain_upstream() == [{"type": "conversation.item.truncate", "item_id": "i1",
                                      "content_index": 0, "audio_end_ms": 260}]
    assert core.next_frame() == bytes(FRAME_BYTES)  # cut within one frame
    delta(core, "r1", "i1", 10)  # late audio of the cut response
    assert core.next_frame() == bytes(FRAME_BYTES)
    up(core, "response.done", response={"id": "r1", "status": "cancelled"})
    assert client_types(core) == ["response.done"]  # no stopped after cleared
    [record] = core.stats.barge_ins
    assert record.truncated == [("i1", 260)] and record.reason == "speech_started"


def test_call_core_barge_in_deletes_an_item_nothing_of_which_was_played() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 10)
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    assert core.drain_upstream() == [{"type": "conversation.item.delete", "item_id": "i1"}]


def test_call_core_interrupt_response_false_cuts_nothing() -> None:
    td = {"type": "server_vad", "interrupt_response": False}
    core = opened()
    up(core, "session.updated", session={"type": "realtime",
                                         "audio": {"input": {"turn_detection": td}}})
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 10)
    pull(core, 2)
    core.drain_client()
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    assert client_types(core) == ["input_audio_buffer.speech_started"]
    assert core.drain_upstream() == []
    assert core.next_frame() == PCM_20MS


def test_call_core_client_clear_cuts_and_is_not_forwarded() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 10)
    pull(core, 3)
    core.drain_client()
    core.client_message(json.dumps({"type": "response.cancel"}))
    core.client_message(json.dumps({"type": "output_audio_buffer.clear"}))
    events = core.drain_client()
    assert [e["type"] for e in events] == ["output_audio_buffer.cleared"]
    assert events[0]["response_id"] == "r1" and events[0]["event_id"].startswith("event_")
    assert core.drain_upstream() == [
        {"type": "response.cancel"},
        {"type": "conversation.item.truncate", "item_id": "i1", "content_index": 0,
         "audio_end_ms": 60},
    ]


def test_call_core_client_clear_with_nothing_playing_still_answers() -> None:
    core = opened()
    core.client_message(json.dumps({"type": "output_audio_buffer.clear"}))
    assert client_types(core) == ["output_audio_buffer.cleared"]
    assert core.drain_upstream() == []


def test_call_core_back_to_back_responses_cut_right() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 5)
    up(core, "response.done", response={"id": "r1", "status": "completed"})
    start_response(core, "r2", "i2")
    delta(core, "r2", "i2", 5)
    up(core, "response.done", response={"id": "r2", "status": "completed"})
    pull(core, 5)  # r1 fully played
    pull(core, 2)  # 40 ms of r2
    events = core.drain_client()
    kinds = [e["type"] for e in events]
    assert kinds.count("output_audio_buffer.started") == 2
    stopped = [e["response_id"] for e in events if e["type"] == "output_audio_buffer.stopped"]
    assert stopped == ["r1"]
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u")
    cleared = [e for e in core.drain_client() if e["type"] == "output_audio_buffer.cleared"]
    assert [e["response_id"] for e in cleared] == ["r2"]
    assert core.drain_upstream() == [{"type": "conversation.item.truncate", "item_id": "i2",
                                      "content_index": 0, "audio_end_ms": 40}]


def test_call_core_generation_done_long_before_playout_is_cut_at_what_played() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 500)  # 10 s arrives at once
    up(core, "response.done", response={"id": "r1", "status": "completed"})
    pull(core, 150)  # 3 s played
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u")
    assert core.drain_upstream()[-1]["audio_end_ms"] == 3000


def test_call_core_interrupt_between_responses_touches_only_the_unplayed_one() -> None:
    core = opened()
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 3)
    up(core, "response.done", response={"id": "r1", "status": "completed"})
    pull(core, 3)
    start_response(core, "r2", "i2")  # no audio yet
    core.drain_client()
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u")
    assert client_types(core) == ["input_audio_buffer.speech_started"]  # nothing was playing
    assert core.drain_upstream() == [{"type": "conversation.item.delete", "item_id": "i2"}]
    delta(core, "r2", "i2", 3)
    assert core.next_frame() == bytes(FRAME_BYTES)


def test_call_core_playout_is_bounded_and_drops_the_excess() -> None:
    core = make_core(max_seconds=0.1)  # 5 frames
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 8)
    assert core.playout.queued == 5 * FRAME_SAMPLES
    assert core.playout.dropped == 3 * FRAME_SAMPLES
    assert pull(core, 5) == PCM_20MS * 5
    delta(core, "r1", "i1", 2)  # room again
    assert pull(core, 2) == PCM_20MS * 2


def test_call_core_upstream_close_becomes_an_error_event() -> None:
    core = opened()
    core.upstream_closed(1011, "internal error")
    [event] = core.drain_client()
    assert event["type"] == "error" and event["error"]["code"] == "upstream_closed"
    assert "1011" in event["error"]["message"]


# ------------------------------------------------ the client's story of its session

def started(session: dict[str, Any] | None = None) -> tuple[CallCore, str]:
    """A core whose channel is open and whose first session.update went upstream."""
    core = opened(session or {"type": "realtime", "instructions": "be brief"})
    core.start()
    [initial] = core.drain_upstream()
    return core, initial["event_id"]


def test_call_core_first_event_is_created_with_the_calls_session() -> None:
    core, _ = started()
    up(core, "session.created", session={"type": "realtime", "instructions": ""})
    assert core.drain_client() == []  # the upstream's defaults are not the call's story
    up(core, "session.updated", event_id="ev_up",
       session={"type": "realtime", "instructions": "be brief"})
    [created] = core.drain_client()
    assert created["type"] == "session.created"
    assert created["session"]["instructions"] == "be brief"


def test_call_core_relay_notice_follows_session_created_then_goes_at_once() -> None:
    core, _ = started()
    notice = {"type": "relay.recording.started", "event_id": "event_1"}
    core.notify_client(notice)
    up(core, "session.created", session={"type": "realtime"})
    assert core.drain_client() == []  # held: session.created is the channel's first event
    up(core, "session.updated", session={"type": "realtime", "instructions": "be brief"})
    assert [e["type"] for e in core.drain_client()] == ["session.created",
                                                        "relay.recording.started"]
    core.attach_sideband("sideband-1")
    core.notify_client({**notice, "event_id": "event_2"})
    assert core.drain_client() == [{**notice, "event_id": "event_2"}]
    assert core.drain_sideband("sideband-1") == []  # the client's alone


def test_call_core_session_updated_only_answers_the_clients_own_update() -> None:
    core, _ = started()
    up(core, "session.created", session={"type": "realtime"})
    up(core, "session.updated", session={"type": "realtime", "instructions": "be brief"})
    core.drain_client()
    up(core, "session.updated", session={"type": "realtime", "instructions": "unasked"})
    assert core.drain_client() == []
    core.client_message(json.dumps({"type": "session.update", "event_id": "mine",
                                    "session": {"instructions": "louder"}}))
    [update] = core.drain_upstream()
    assert update["event_id"] == "mine" and "model" not in update["session"]
    up(core, "session.updated", session={"type": "realtime", "instructions": "louder"})
    assert client_types(core) == ["session.updated"]
    assert core.session["instructions"] == "louder"


def test_call_core_error_about_a_client_update_names_its_event_id() -> None:
    core, _ = started()
    up(core, "session.updated", session={"type": "realtime"})
    core.drain_client()
    core.client_message(json.dumps({"type": "session.update", "session": {"voice": "x"}}))
    [update] = core.drain_upstream()
    sent_id = update["event_id"]  # the relay named it, so the answer can be routed
    up(core, "error", error={"type": "invalid_request_error", "code": "invalid_value",
                             "message": "bad voice", "param": "session.audio.output.voice",
                             "event_id": sent_id})
    [error] = core.drain_client()
    assert error["type"] == "error" and error["error"]["event_id"] is None
    assert error["error"]["message"] == "bad voice"
    assert len(core._updates) == 0


def test_call_core_refused_initial_update_still_creates_the_session() -> None:
    core, initial_id = started()
    up(core, "session.created", session={"type": "realtime", "instructions": "defaults"})
    up(core, "error", error={"type": "invalid_request_error", "code": "unknown_parameter",
                             "message": "no such field", "param": "session.x",
                             "event_id": initial_id})
    events = core.drain_client()
    assert [e["type"] for e in events] == ["error", "session.created"]
    assert events[1]["session"]["instructions"] == "defaults"


def test_call_core_other_errors_pass_through() -> None:
    core, _ = started()
    up(core, "error", error={"type": "server_error", "code": None, "message": "x",
                             "param": None, "event_id": "someone_else"})
    assert client_types(core) == ["error"]


def test_call_core_large_event_fits_the_channel_limit() -> None:
    core = make_core()
    core.channel_opened(max_message_size=4096)
    audio = base64.b64encode(b"\x00" * 48_000).decode()
    up(core, "conversation.item.retrieved", event_id="ev1", item={
        "id": "item1", "type": "message", "role": "user", "object": "realtime.item",
        "status": "completed",
        "content": [{"type": "input_audio", "audio": audio, "transcript": "hi"}]})
    [message] = core.drain_client_messages()
    event = json.loads(message)
    assert len(message.encode()) <= 4096
    assert event["item"]["content"][0] == {"type": "input_audio", "audio": None,
                                           "transcript": "hi"}
    assert event["relay_omitted"] == ["item.content[0].audio"]


# ------------------------------------------------------------------------ sidebands

def test_call_core_sideband_gets_every_event_but_the_greeting_and_audio() -> None:
    core, _ = started()
    core.attach_sideband("sb")
    up(core, "session.updated", session={"type": "realtime", "instructions": "be brief"})
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 2)
    pull(core, 1)
    kinds = [e["type"] for e in core.drain_sideband("sb")]
    assert kinds == ["response.created", "response.output_item.added",
                     "output_audio_buffer.started"]
    assert client_types(core)[0] == "session.created"
    core.detach_sideband("sb")
    up(core, "rate_limits.updated", rate_limits=[])
    assert core.drain_sideband("sb") == []


def test_call_core_sideband_update_is_answered_to_all_errors_to_it_alone() -> None:
    core, _ = started()
    up(core, "session.updated", session={"type": "realtime"})
    core.attach_sideband("sb")
    core.attach_sideband("other")
    core.drain_client()
    core.client_message(json.dumps({"type": "session.update", "event_id": "s1",
                                    "session": {"instructions": "tools on"}}), "sb")
    core.client_message(json.dumps({"type": "response.create", "event_id": "s2"}), "sb")
    core.client_message("{oops", "sb")
    assert [e["event_id"] for e in core.drain_upstream()] == ["s1", "s2"]
    up(core, "session.updated", session={"type": "realtime", "instructions": "tools on"})
    up(core, "error", error={"type": "invalid_request_error", "message": "busy",
                             "code": "x", "param": None, "event_id": "s2"})
    assert [e["type"] for e in core.drain_sideband("sb")] == ["error", "session.updated",
                                                              "error"]
    assert [e["type"] for e in core.drain_sideband("other")] == ["session.updated"]
    assert client_types(core) == ["session.updated"]


def test_call_core_controller_truncation_is_the_relays_to_make() -> None:
    core = opened()
    core.attach_sideband("sb")
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 10)
    pull(core, 3)
    # A controller truncating an item still playing: the relay cuts at what was sent.
    core.client_message(json.dumps({"type": "conversation.item.truncate", "item_id": "i1",
                                    "content_index": 0, "audio_end_ms": 5000}), "sb")
    assert core.drain_upstream() == [{"type": "conversation.item.truncate", "item_id": "i1",
                                      "content_index": 0, "audio_end_ms": 60}]
    # Its second, late estimate is dropped: the exact one was sent.
    core.client_message(json.dumps({"type": "conversation.item.truncate", "item_id": "i1",
                                    "content_index": 0, "audio_end_ms": 900}), "sb")
    assert core.drain_upstream() == []
    # An item the relay never played is not the relay's: it goes through.
    core.client_message(json.dumps({"type": "conversation.item.truncate", "item_id": "old",
                                    "content_index": 0, "audio_end_ms": 10}), "sb")
    assert [e["item_id"] for e in core.drain_upstream()] == ["old"]


def user_text(text: str) -> str:
    return json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def test_call_core_held_client_events_follow_the_agents_first_update() -> None:
    core = opened()
    core.start()
    core.drain_upstream()
    core.hold_client_events()
    core.attach_sideband("agent")
    core.client_message(user_text("hi"))
    core.client_message(json.dumps({"type": "response.create"}))
    core.uplink_audio(PCM_20MS)  # audio is never held
    assert [e["type"] for e in core.drain_upstream()] == ["input_audio_buffer.append"]
    core.client_message(json.dumps({"type": "session.update", "session": {
        "instructions": "agent", "tools": []}}), "agent")
    assert [e["type"] for e in core.drain_upstream()] == [
        "session.update", "conversation.item.create", "response.create"]
    core.client_message(json.dumps({"type": "response.create"}))  # no longer held
    assert [e["type"] for e in core.drain_upstream()] == ["response.create"]


def test_call_core_released_client_events_go_on_without_an_agent() -> None:
    core = opened()
    core.hold_client_events()
    core.client_message(json.dumps({"type": "response.create", "event_id": "c1"}))
    core.client_message("not json")  # its error waits with it, in order
    assert core.drain_upstream() == [] and core.drain_client() == []
    core.release_client_events()
    core.release_client_events()  # twice is harmless
    assert [e.get("event_id") for e in core.drain_upstream()] == ["c1"]
    assert client_types(core) == ["error"]


def test_call_core_relay_error_reaches_the_client_and_sidebands() -> None:
    core = opened()
    core.attach_sideband("logger")
    core.relay_error(AgentFailed("The call's agent stopped."))
    [event] = core.drain_client()
    assert event["type"] == "error" and event["error"]["code"] == "agent_error"
    assert event["error"]["type"] == "server_error"
    assert core.drain_sideband("logger") == [event]


def timed_core(padding_ms: int) -> tuple[CallCore, FakeClock]:
    """A core whose effective session pads speech starts by ``padding_ms``, and its clock."""
    clock = FakeClock()
    core = CallCore("rtc_test", {"type": "realtime"}, max_playout_samples=24000 * 60,
                    clock=clock)
    core.channel_opened()
    td = {"type": "server_vad", "prefix_padding_ms": padding_ms}
    up(core, "session.updated", session={"type": "realtime",
                                         "audio": {"input": {"turn_detection": td}}})
    return core, clock


def talk_and_play(core: CallCore, clock: FakeClock, frames: int) -> None:
    """``frames`` steps of 20 ms: one uplink chunk arrives and one frame is pulled each."""
    for _ in range(frames):
        clock.now += 0.020
        core.uplink_audio(PCM_20MS)
        core.next_frame()


def test_call_core_barge_in_stop_latency_runs_from_the_onsets_arrival_to_the_next_frame(
        ) -> None:
    core, clock = timed_core(padding_ms=300)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 100)  # 2 s of reply
    talk_and_play(core, clock, 50)  # chunk k (of samples [480(k-1), 480k)) came at 100+0.02k
    # Onset at 400 + 300 ms of padding = sample 16800: chunk 36, which came at 100.72.
    up(core, "input_audio_buffer.speech_started", audio_start_ms=400, item_id="u1")
    [record] = core.stats.barge_ins
    assert record.cut_latency_ms is None  # not yet: the reply stops at the next frame
    clock.now = 101.02
    assert core.next_frame() == bytes(FRAME_BYTES)
    assert record.cut_latency_ms == pytest.approx(300.0)


def test_call_core_client_clear_stop_latency_is_until_the_next_frame() -> None:
    core, clock = timed_core(padding_ms=0)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 10)
    talk_and_play(core, clock, 3)
    core.client_message(json.dumps({"type": "output_audio_buffer.clear"}))
    clock.now += 0.012
    core.next_frame()
    [record] = core.stats.barge_ins
    assert record.cut_latency_ms == pytest.approx(12.0)


def test_call_core_barge_in_stop_latency_when_the_reply_had_run_dry() -> None:
    core, clock = timed_core(padding_ms=0)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 5)  # 100 ms, still being generated
    talk_and_play(core, clock, 20)  # its last frame went out at 100.10, ended at 100.12
    # Speech from sample 960 (chunk 3, came at 100.06): the reply went on 60 ms after it.
    up(core, "input_audio_buffer.speech_started", audio_start_ms=40, item_id="u1")
    core.next_frame()
    [record] = core.stats.barge_ins
    assert record.cut_latency_ms == pytest.approx(60.0)


def test_call_core_barge_in_after_the_reply_went_quiet_has_no_stop_latency() -> None:
    core, clock = timed_core(padding_ms=0)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 5)
    talk_and_play(core, clock, 20)
    # Speech from sample 7200 (chunk 16, came at 100.32): the reply had ended at 100.12.
    up(core, "input_audio_buffer.speech_started", audio_start_ms=300, item_id="u1")
    core.next_frame()
    [record] = core.stats.barge_ins
    assert record.truncated == [("i1", 100)] and record.cut_latency_ms is None


@pytest.mark.parametrize("start_ms", [-1, "0", None, 10_000])
def test_call_core_barge_in_with_an_unknown_onset_has_no_stop_latency(start_ms: Any) -> None:
    core, clock = timed_core(padding_ms=0)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 50)
    talk_and_play(core, clock, 10)  # 200 ms of uplink: 10 s is beyond it
    up(core, "input_audio_buffer.speech_started", audio_start_ms=start_ms, item_id="u1")
    core.next_frame()
    [record] = core.stats.barge_ins
    assert record.cut_latency_ms is None


def test_call_core_reply_begun_after_the_onset_is_talked_over_from_its_start() -> None:
    core, clock = timed_core(padding_ms=0)
    talk_and_play(core, clock, 10)  # the user starts at sample 0 (chunk 1, came at 100.02)
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 50)
    talk_and_play(core, clock, 5)  # the reply's first frame went out at 100.22
    up(core, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    clock.now = 100.32
    core.next_frame()
    [record] = core.stats.barge_ins
    assert record.cut_latency_ms == pytest.approx(100.0)


def test_call_core_tool_credentials_never_reach_the_client_or_sidebands() -> None:
    mcp = {"type": "mcp", "server_label": "notes", "server_url": "https://mcp.example",
           "authorization": "sk-mcp-credential-1", "headers": {"X-Key": "hdr-credential-2"}}
    core, _ = started({"type": "realtime", "tools": [mcp]})
    core.attach_sideband("sideband-1")
    up(core, "session.created", session={"type": "realtime"})
    # An upstream that echoes the whole session back, credentials included.
    up(core, "session.updated", session={"type": "realtime", "tools": [mcp]})
    # ... and one that quotes a credential in an error.
    up(core, "error", error={"type": "invalid_request_error", "code": "mcp_failed",
                             "message": "MCP server refused Bearer sk-mcp-credential-1"})
    core.client_message(json.dumps({"type": "session.update", "session": {"tools": [mcp]}}),
                        "sideband-1")
    up(core, "session.updated", session={"type": "realtime", "tools": [mcp]})
    seen = json.dumps(core.drain_client()) + json.dumps(core.drain_sideband("sideband-1"))
    assert "credential-1" not in seen and "credential-2" not in seen
    assert '"server_url": "https://mcp.example"' in seen and "***" in seen
    # What goes upstream keeps them: the model needs them to reach the tool.
    assert core.drain_upstream()[0]["session"]["tools"][0]["authorization"] == \
        "sk-mcp-credential-1"


@pytest.mark.parametrize("clears", [True, False])
def test_call_core_sideband_cancel_silences_the_call(clears: bool) -> None:
    core = CallCore("rtc_test", {"type": "realtime"}, max_playout_samples=60 * 24000,
                    clock=FakeClock(), sideband_cancel_clears_playout=clears)
    core.channel_opened()
    core.attach_sideband("sideband-1")
    start_response(core, "r1", "i1")
    delta(core, "r1", "i1", 50)  # a second of reply queued
    assert pull(core, 4) == PCM_20MS * 4
    core.drain_client()
    core.client_message(json.dumps({"type": "response.cancel", "event_id": "guard"}),
                        "sideband-1")
    upstream = core.drain_upstream()
    assert upstream[0] == {"type": "response.cancel", "event_id": "guard"}
    if not clears:
        # The old behaviour: only the cancel; the queued reply plays on.
        assert upstream == upstream[:1] and pull(core, 1) == PCM_20MS
        return
    # The cut is exact: 80 ms were sent to the peer, and nothing more plays.
    assert upstream[1:] == [{"type": "conversation.item.truncate", "item_id": "i1",
                             "content_index": 0, "audio_end_ms": 80}]
    assert pull(core, 5) == bytes(len(PCM_20MS) * 5)
    assert "output_audio_buffer.cleared" in client_types(core)
    assert [b.reason for b in core.stats.barge_ins] == ["sideband-1_cancel"]
