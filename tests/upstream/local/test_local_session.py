"""The local server's sans-I/O session, with plain synchronous calls."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from relay.upstream.local.local_session import LocalSession
from relay.upstream.local.response import BEEP_TRANSCRIPT

from .signals import chunks, silence, tone

Event = dict[str, Any]

TURN_SEND = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]
TURN_CLOSE = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]


def append(session: LocalSession, pcm: bytes, ms: int = 40) -> list[Event]:
    events: list[Event] = []
    for piece in chunks(pcm, ms):
        audio = base64.b64encode(piece).decode()
        events += session.receive_event({"type": "input_audio_buffer.append", "audio": audio})
    return events


def drain(session: LocalSession) -> list[Event]:
    events: list[Event] = []
    while (chunk := session.next_response_chunk()) is not None:
        events += chunk.events
    return events


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def deltas_pcm(events: list[Event]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events
                    if e["type"] == "response.output_audio.delta")


def only(events: list[Event], kind: str) -> Event:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, types(events)
    return found[0]


def update(session: LocalSession, **turn: Any) -> list[Event]:
    return session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": turn or None}}}})


UTTERANCE = silence(500) + tone(1000) + silence(1000)


def test_session_created_is_a_full_ga_session() -> None:
    session = LocalSession(model="gpt-test")
    [created] = session.start()
    assert created["type"] == "session.created" and created["event_id"].startswith("event_")
    config = created["session"]
    assert config["type"] == "realtime" and config["object"] == "realtime.session"
    assert config["id"].startswith("sess_") and config["model"] == "gpt-test"
    assert config["output_modalities"] == ["audio"]
    assert config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert config["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert config["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                         "voice": "alloy", "speed": 1.0}
    assert (config["tools"], config["tool_choice"], config["max_output_tokens"]) == (
        [], "auto", "inf")


def test_session_update_merges_into_the_full_session() -> None:
    session = LocalSession()
    [updated] = session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "instructions": "be brief",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}},
                  "output": {"voice": "verse"}}}})
    assert updated["type"] == "session.updated"
    config = updated["session"]
    assert config["instructions"] == "be brief"
    assert config["audio"]["output"]["voice"] == "verse"
    assert config["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    turn = config["audio"]["input"]["turn_detection"]
    assert turn["threshold"] == 0.7 and turn["silence_duration_ms"] == 500


def test_session_update_translates_flat_aliases() -> None:
    session = LocalSession()
    [updated] = session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "turn_detection": None, "input_audio_format": "pcm16"}})
    assert updated["session"]["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize("fmt", [{"type": "audio/pcmu"}, {"type": "audio/pcm", "rate": 16000}])
def test_session_update_rejects_other_formats(fmt: dict[str, Any]) -> None:
    session = LocalSession()
    before = json.dumps(session.config)
    [error] = session.receive_event({"type": "session.update", "event_id": "c1", "session": {
        "type": "realtime", "instructions": "x", "audio": {"input": {"format": fmt}}}})
    assert error["type"] == "error"
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "session.audio.input.format"
    assert error["error"]["event_id"] == "c1"
    assert json.dumps(session.config) == before


@pytest.mark.parametrize("body", [{"instructions": "x"}, {"type": "conversation"}])
def test_session_update_requires_a_session_type(body: dict[str, Any]) -> None:
    session = LocalSession()
    [error] = session.receive_event({"type": "session.update", "session": body})
    assert error["type"] == "error" and error["error"]["param"] == "session.type"
    assert session.config["instructions"] == ""


def test_session_turn_event_order_is_the_recorded_one() -> None:
    session = LocalSession()
    sent = append(session, UTTERANCE)
    assert types(sent) == TURN_SEND
    played = drain(session)
    kinds = types(played)
    assert kinds[-len(TURN_CLOSE):] == TURN_CLOSE
    middle = kinds[:-len(TURN_CLOSE)]
    assert set(middle) == {"response.output_audio_transcript.delta",
                           "response.output_audio.delta"}
    assert middle[0] == "response.output_audio_transcript.delta"
    assert middle.count("response.output_audio.delta") == 18  # 1800 ms in 100 ms deltas
    ids = [e["event_id"] for e in sent + played]
    assert len(set(ids)) == len(ids)


def test_session_turn_parrots_the_committed_region() -> None:
    session = LocalSession()
    sent = append(session, UTTERANCE)
    start = only(sent, "input_audio_buffer.speech_started")
    stop = only(sent, "input_audio_buffer.speech_stopped")
    assert (start["audio_start_ms"], stop["audio_end_ms"]) == (200, 2000)
    item_id = start["item_id"]
    assert stop["item_id"] == item_id
    assert only(sent, "input_audio_buffer.committed") == {
        **only(sent, "input_audio_buffer.committed"), "item_id": item_id,
        "previous_item_id": None}
    user = sent[3]["item"]
    assert user == {"id": item_id, "object": "realtime.item", "type": "message",
                    "status": "completed", "role": "user",
                    "content": [{"type": "input_audio", "transcript": None}]}
    played = drain(session)
    assert deltas_pcm(played) == UTTERANCE[200 * 48:2000 * 48]
    transcript = only(played, "response.output_audio_transcript.done")["transcript"]
    assert transcript == "You said something 1.8 seconds long."
    assert "".join(e["delta"] for e in played
                   if e["type"] == "response.output_audio_transcript.delta") == transcript
    done = only(played, "response.done")["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] > 0
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
    delta = next(e for e in played if e["type"] == "response.output_audio.delta")
    assert (delta["output_index"], delta["content_index"]) == (0, 0)
    assert delta["item_id"] == done["output"][0]["id"] and delta["response_id"] == done["id"]


def test_session_create_response_false_commits_without_responding() -> None:
    session = LocalSession()
    update(session, type="server_vad", create_response=False)
    sent = append(session, UTTERANCE)
    assert types(sent) == TURN_SEND[:5]
    assert session.next_response_chunk() is None


def test_session_speech_interrupts_a_response() -> None:
    session = LocalSession()
    append(session, UTTERANCE)
    session.next_response_chunk()
    sent = append(session, tone(200))
    assert types(sent) == ["input_audio_buffer.speech_started", *TURN_CLOSE]
    done = only(sent, "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    assert not session.response_active


def test_session_speech_does_not_interrupt_when_told_not_to() -> None:
    session = LocalSession()
    update(session, type="server_vad", interrupt_response=False)
    append(session, UTTERANCE)
    first = session.next_response_chunk()
    assert first is not None
    sent = append(session, tone(300) + silence(600))
    assert "response.done" not in types(sent)
    assert types(sent) == TURN_SEND[:5]  # the second turn is committed, its answer queued
    played = drain(session)
    assert types(played).count("response.done") == 2
    assert types(played).count("response.created") == 1
    assert only(played, "response.created")["response"]["id"] != first.response_id


def test_session_response_create_parrots_latest_audio_item() -> None:
    session = LocalSession()
    update(session)
    audio = tone(400)
    session.receive_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_audio", "audio": base64.b64encode(audio).decode()}]}})
    sent = session.receive_event({"type": "response.create"})
    assert types(sent) == TURN_SEND[5:]
    assert deltas_pcm(drain(session)) == audio


def test_session_response_create_without_audio_beeps() -> None:
    session = LocalSession()
    session.receive_event({"type": "response.create"})
    played = drain(session)
    assert len(deltas_pcm(played)) == 300 * 48
    assert only(played, "response.output_audio_transcript.done")["transcript"] == BEEP_TRANSCRIPT


def test_session_response_create_while_active_is_an_error() -> None:
    session = LocalSession()
    session.receive_event({"type": "response.create"})
    [error] = session.receive_event({"type": "response.create", "event_id": "c2"})
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "c2"


def test_session_response_cancel_stops_the_response() -> None:
    session = LocalSession()
    session.receive_event({"type": "response.create"})
    sent = session.receive_event({"type": "response.cancel"})
    assert types(sent) == TURN_CLOSE
    done = only(sent, "response.done")["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert session.next_response_chunk() is None


def test_session_response_cancel_without_response_is_an_error() -> None:
    [error] = LocalSession().receive_event({"type": "response.cancel"})
    assert error["error"]["code"] == "response_cancel_not_active"


def test_session_text_only_response_has_no_audio() -> None:
    session = LocalSession()
    session.receive_event({"type": "session.update", "session": {
        "type": "realtime", "output_modalities": ["text"]}})
    sent = session.receive_event({"type": "response.create"}) + drain(session)
    assert "response.output_audio.delta" not in types(sent)
    assert types(sent)[-6:] == ["response.output_text.done", "response.content_part.done",
                                "conversation.item.done", "response.output_item.done",
                                "response.done", "rate_limits.updated"]
    text = only(sent, "response.output_text.done")["text"]
    assert text == "".join(e["delta"] for e in sent if e["type"] == "response.output_text.delta")


def test_session_out_of_band_response_stays_out_of_the_conversation() -> None:
    session = LocalSession()
    sent = session.receive_event({"type": "response.create",
                                  "response": {"conversation": "none", "metadata": {"k": "1"}}})
    sent += drain(session)
    assert "conversation.item.added" not in types(sent)
    assert only(sent, "response.done")["response"]["metadata"] == {"k": "1"}
    assert len(session.conversation) == 0


def _assistant_turn(session: LocalSession) -> tuple[str, int]:
    append(session, UTTERANCE)
    played = drain(session)
    item = only(played, "response.output_item.done")["item"]
    return item["id"], len(deltas_pcm(played)) // 48


def test_session_truncate_past_the_audio_is_an_error() -> None:
    session = LocalSession()
    item_id, audio_ms = _assistant_turn(session)
    [error] = session.receive_event({"type": "conversation.item.truncate", "item_id": item_id,
                                     "content_index": 0, "audio_end_ms": 5000})
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "audio_end_ms"
    assert error["error"]["message"] == (
        f"Audio content of {audio_ms}ms is already shorter than 5000ms")


def test_session_truncate_cuts_audio_and_transcript() -> None:
    session = LocalSession()
    item_id, audio_ms = _assistant_turn(session)
    [event] = session.receive_event({"type": "conversation.item.truncate", "item_id": item_id,
                                     "content_index": 0, "audio_end_ms": audio_ms // 2})
    assert event == {**event, "type": "conversation.item.truncated", "item_id": item_id,
                     "content_index": 0, "audio_end_ms": audio_ms // 2}
    [retrieved] = session.receive_event({"type": "conversation.item.retrieve",
                                         "item_id": item_id})
    assert retrieved["item"]["content"][0]["transcript"] == "You said something"
    [error] = session.receive_event({"type": "conversation.item.truncate", "item_id": item_id,
                                     "content_index": 0, "audio_end_ms": audio_ms // 2 + 1})
    assert error["type"] == "error"
    [event] = session.receive_event({"type": "conversation.item.truncate", "item_id": item_id,
                                     "content_index": 0, "audio_end_ms": 0})
    assert event["type"] == "conversation.item.truncated"


def test_session_truncate_unknown_or_user_item_is_an_error() -> None:
    session = LocalSession()
    [error] = session.receive_event({"type": "conversation.item.truncate", "item_id": "nope",
                                     "content_index": 0, "audio_end_ms": 10})
    assert (error["error"]["code"], error["error"]["param"]) == ("invalid_value", "item_id")
    sent = append(session, UTTERANCE)
    user_id = sent[0]["item_id"]
    [error] = session.receive_event({"type": "conversation.item.truncate", "item_id": user_id,
                                     "content_index": 0, "audio_end_ms": 10})
    assert error["error"]["param"] == "item_id"


def test_session_unknown_event_is_an_error() -> None:
    session = LocalSession()
    [error] = session.receive_event({"type": "response.frobnicate", "event_id": "c9"})
    body = error["error"]
    assert body["type"] == "invalid_request_error" and body["code"] == "invalid_value"
    assert body["param"] == "type" and body["event_id"] == "c9"
    assert body["message"].startswith("Invalid value: 'response.frobnicate'. Supported values")


def test_session_bad_json_is_an_error() -> None:
    [error] = LocalSession().receive_message("{not json")
    assert error["type"] == "error" and error["error"]["code"] == "invalid_json"


def test_session_bad_base64_is_an_error() -> None:
    [error] = LocalSession().receive_event({"type": "input_audio_buffer.append",
                                            "audio": "***"})
    assert (error["error"]["code"], error["error"]["param"]) == ("invalid_value", "audio")


def test_session_manual_commit_needs_100ms() -> None:
    session = LocalSession()
    update(session)  # turn detection off
    append(session, tone(50))
    [error] = session.receive_event({"type": "input_audio_buffer.commit"})
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert append(session, tone(1000)) == []
    sent = session.receive_event({"type": "input_audio_buffer.commit"})
    assert types(sent) == TURN_SEND[2:5]
    assert session.next_response_chunk() is None
    session.receive_event({"type": "response.create"})
    assert len(deltas_pcm(drain(session))) == 1050 * 48


def test_session_clear_empties_the_buffer() -> None:
    session = LocalSession()
    update(session)
    append(session, tone(500))
    assert types(session.receive_event({"type": "input_audio_buffer.clear"})) == [
        "input_audio_buffer.cleared"]
    [error] = session.receive_event({"type": "input_audio_buffer.commit"})
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"


def test_session_items_can_be_created_retrieved_and_deleted() -> None:
    session = LocalSession()
    added = session.receive_event({"type": "conversation.item.create", "item": {
        "id": "item_a", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hi"}]}})
    assert types(added) == ["conversation.item.added", "conversation.item.done"]
    first = session.receive_event({"type": "conversation.item.create",
                                   "previous_item_id": "root", "item": {
                                       "type": "function_call", "call_id": "c",
                                       "name": "f", "arguments": "{}"}})
    assert first[0]["previous_item_id"] is None
    assert [item.id for item in session.conversation][1] == "item_a"
    [retrieved] = session.receive_event({"type": "conversation.item.retrieve",
                                         "item_id": "item_a"})
    assert retrieved["item"]["content"] == [{"type": "input_text", "text": "hi"}]
    [deleted] = session.receive_event({"type": "conversation.item.delete",
                                       "item_id": "item_a"})
    assert deleted["type"] == "conversation.item.deleted" and deleted["item_id"] == "item_a"
    [error] = session.receive_event({"type": "conversation.item.delete", "item_id": "item_a"})
    assert error["type"] == "error"


def test_session_echo_mode_returns_each_append_at_once() -> None:
    session = LocalSession(mode="echo")
    first = append(session, tone(40))
    assert types(first) == TURN_SEND[5:] + ["response.output_audio.delta"]
    second = append(session, silence(20) + tone(20))
    assert types(second) == ["response.output_audio.delta"]
    assert deltas_pcm(first + second) == tone(40) + silence(20) + tone(20)
    assert session.next_response_chunk() is None
    closing = session.receive_event({"type": "response.cancel"})
    assert types(closing) == TURN_CLOSE
    assert only(closing, "response.done")["response"]["status"] == "cancelled"


def test_session_echo_mode_response_create_opens_the_echo_response() -> None:
    session = LocalSession(mode="echo")
    assert types(session.receive_event({"type": "response.create"})) == TURN_SEND[5:]
    assert types(append(session, tone(20))) == ["response.output_audio.delta"]
    assert session.next_response_chunk() is None
