"""Event ids, parsing client messages, error events, and the wire encoding."""

from __future__ import annotations

import json
import re
import string

import pytest
from openai.types.realtime import RealtimeErrorEvent

from relay.errors import CallNotFound, InvalidRequest, RelayError
from relay.protocol.events import dumps, error_event, new_event_id, parse_event, random_id

from ..support.realtime import server_event

ALPHANUMERIC = set(string.ascii_letters + string.digits)


def test_random_id_is_prefix_then_requested_length() -> None:
    for length in (0, 1, 22, 32, 300):
        value = random_id("x_", length)
        assert value.startswith("x_") and len(value) == 2 + length


def test_random_id_default_length_is_22() -> None:
    assert len(random_id("")) == 22


def test_random_id_draws_from_all_62_letters_and_digits_only() -> None:
    seen: set[str] = set()
    for _ in range(1000):
        seen.update(random_id("", 22))
    # 22,000 draws: every one of the 62 characters turns up, and nothing else does.
    assert seen == ALPHANUMERIC


def test_random_id_is_unique_over_many() -> None:
    ids = [random_id("p_") for _ in range(20000)]
    assert len(set(ids)) == len(ids)


def test_new_event_id_is_shaped_like_the_hosted_ids() -> None:
    assert re.fullmatch(r"event_[A-Za-z0-9]{22}", new_event_id())
    assert new_event_id() != new_event_id()


def test_parse_event_returns_the_object() -> None:
    event = parse_event('{"type": "response.create", "event_id": "e1", "response": {}}')
    assert event == {"type": "response.create", "event_id": "e1", "response": {}}


def test_parse_event_takes_utf8_bytes() -> None:
    event = parse_event('{"type":"x","text":"héllo ✓"}'.encode())
    assert event == {"type": "x", "text": "héllo ✓"}


@pytest.mark.parametrize("message", ["", "{", "not json", '{"type": "x",}', b"\xff\xfe{"])
def test_parse_event_rejects_what_is_not_json(message: str | bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_event(message)
    assert caught.value.code == "invalid_json" and caught.value.status == 400


def test_parse_event_rejects_invalid_utf8_bytes() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_event(b'{"type":"x","text":"\xc3\x28"}')
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize("message", ["[]", '[{"type": "x"}]', '"session.update"', "42", "null"])
def test_parse_event_rejects_json_that_is_not_an_object(message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_event(message)
    assert caught.value.code == "invalid_event"


@pytest.mark.parametrize("message", ["{}", '{"type": ""}', '{"type": null}', '{"type": 3}',
                                     '{"type": ["x"]}', '{"event_id": "e1"}'])
def test_parse_event_needs_a_nonempty_string_type(message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_event(message)
    assert caught.value.param == "type"
    assert caught.value.code == "missing_required_parameter"


def test_error_event_is_a_valid_server_event() -> None:
    error = InvalidRequest("bad thing", code="invalid_value", param="session.voice")
    event = server_event(error_event(error, "client_evt_1"))
    assert isinstance(event, RealtimeErrorEvent)
    assert re.fullmatch(r"event_[A-Za-z0-9]{22}", event.event_id)
    assert event.error.message == "bad thing"
    assert event.error.type == "invalid_request_error"
    assert event.error.code == "invalid_value"
    assert event.error.param == "session.voice"
    assert event.error.event_id == "client_evt_1"


def test_error_event_without_a_client_event_names_none() -> None:
    raw = error_event(RelayError("boom"))
    assert raw["error"]["event_id"] is None
    event = RealtimeErrorEvent.model_validate(raw)
    assert event.error.type == "server_error" and event.error.code is None


def test_error_event_ids_are_fresh_and_not_the_client_one() -> None:
    error = CallNotFound()
    first, second = error_event(error, "c1"), error_event(error, "c1")
    assert first["event_id"] != second["event_id"]
    assert "c1" not in (first["event_id"], second["event_id"])
    assert first["error"]["code"] == "call_id_not_found"


def test_dumps_is_compact() -> None:
    text = dumps({"type": "x", "list": [1, 2], "nested": {"a": None}})
    assert text == '{"type":"x","list":[1,2],"nested":{"a":null}}'


def test_dumps_keeps_non_ascii_and_round_trips() -> None:
    event = {"type": "response.output_text.delta", "delta": "Grüße, 世界 🎧"}
    text = dumps(event)
    assert "Grüße, 世界 🎧" in text and "\\u" not in text
    assert json.loads(text) == event


def test_events_audio_append_dumps_as_json_would() -> None:
    import base64
    import json

    from relay.protocol.events import AudioAppend, audio_append, b64, dumps

    for pcm in (b"", b"\x00", b"\xff\xfe\xfd", bytes(range(256)) * 4):
        audio = b64(pcm)
        assert audio == base64.b64encode(pcm).decode()
        event = audio_append("input_audio_buffer.append", audio)
        assert event == {"type": "input_audio_buffer.append", "audio": audio}
        assert dumps(event) == json.dumps(dict(event), separators=(",", ":"))
    # Changed into something else, it is encoded as any event is.
    event = AudioAppend(type="session.input_audio.append", audio="AAAA")
    event["event_id"] = 'e"1'
    assert json.loads(dumps(event)) == {"type": "session.input_audio.append",
                                        "audio": "AAAA", "event_id": 'e"1'}
