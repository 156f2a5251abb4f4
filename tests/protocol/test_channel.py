"""What goes on the client's data channel when a server event outgrows the peer's limit."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from openai.types.realtime import RealtimeConversationItemUserMessage, RealtimeErrorEvent
from openai.types.realtime.realtime_server_event import ConversationItemRetrieved
from openai.types.realtime.response_text_done_event import ResponseTextDoneEvent

from relay.protocol.channel import DEFAULT_MAX_MESSAGE_SIZE, OMITTED_FIELD, channel_message
from relay.protocol.events import Event, dumps

from ..support.realtime import server_event

LIMIT = DEFAULT_MAX_MESSAGE_SIZE


def audio_b64(seconds: float) -> str:
    """Base64 of ``seconds`` of 24 kHz PCM16 (not silence: every byte differs in turn)."""
    return base64.b64encode(bytes(range(256)) * int(seconds * 48000 / 256)).decode()


def retrieved(*content: dict[str, Any]) -> Event:
    return {
        "type": "conversation.item.retrieved",
        "event_id": "event_retrieved1",
        "item": {"id": "item_1", "object": "realtime.item", "type": "message",
                 "role": "user", "status": "completed", "content": list(content)},
    }


def text_done(text: str) -> Event:
    return {"type": "response.output_text.done", "event_id": "event_text1",
            "response_id": "resp_1", "item_id": "item_2", "output_index": 0,
            "content_index": 0, "text": text}


def size(message: str) -> int:
    return len(message.encode())


def test_channel_message_small_event_passes_unchanged() -> None:
    event = retrieved({"type": "input_audio", "audio": audio_b64(0.1), "transcript": "hi"})
    message = channel_message(event, LIMIT)
    assert message == dumps(event)
    assert isinstance(server_event(message), ConversationItemRetrieved)


def test_channel_message_drops_audio_over_the_limit_and_says_where() -> None:
    event = retrieved({"type": "input_audio", "audio": audio_b64(2), "transcript": "hello"})
    original = copy.deepcopy(event)
    assert size(dumps(event)) > LIMIT
    message = channel_message(event, LIMIT)
    assert size(message) <= LIMIT
    sent = json.loads(message)
    assert sent.pop(OMITTED_FIELD) == ["item.content[0].audio"]
    expected = copy.deepcopy(original)
    expected["item"]["content"][0]["audio"] = None
    assert sent == expected
    assert event == original  # the caller's event is left as it was
    parsed = server_event(message)
    assert isinstance(parsed, ConversationItemRetrieved)
    item = parsed.item
    assert isinstance(item, RealtimeConversationItemUserMessage)
    assert item.content[0].audio is None and item.content[0].transcript == "hello"


def test_channel_message_drops_every_audio_but_not_empty_or_null_ones() -> None:
    event = retrieved(
        {"type": "input_audio", "audio": audio_b64(1), "transcript": "one"},
        {"type": "input_text", "text": "between"},
        {"type": "input_audio", "audio": "", "transcript": "empty"},
        {"type": "input_audio", "audio": None, "transcript": "null"},
        {"type": "input_audio", "audio": audio_b64(1), "transcript": "two"},
    )
    message = channel_message(event, LIMIT)
    assert isinstance(server_event(message), ConversationItemRetrieved)
    sent = json.loads(message)
    assert sent[OMITTED_FIELD] == ["item.content[0].audio", "item.content[4].audio"]
    content = sent["item"]["content"]
    assert [part.get("audio") for part in content] == [None, None, "", None, None]
    assert [part.get("transcript") or part.get("text") for part in content] == [
        "one", "between", "empty", "null", "two"]


def test_channel_message_too_large_without_audio_becomes_an_error() -> None:
    event = retrieved({"type": "input_audio", "audio": audio_b64(1),
                       "transcript": "word " * 20000})
    message = channel_message(event, LIMIT)
    assert size(message) <= LIMIT
    error = server_event(message)
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.code == "event_too_large"
    assert "conversation.item.retrieved" in error.error.message
    assert "event_retrieved1" in error.error.message
    assert str(size(dumps(event))) in error.error.message
    assert error.event_id != "event_retrieved1"


def test_channel_message_too_large_with_no_audio_at_all_becomes_an_error() -> None:
    event = text_done("x" * (LIMIT + 1))
    error = server_event(channel_message(event, LIMIT))
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.code == "event_too_large"
    assert "response.output_text.done event event_text1" in error.error.message


def test_channel_message_error_without_an_event_id_names_only_the_type() -> None:
    event = {"type": "relay.custom", "blob": "x" * 2000}
    sent = json.loads(channel_message(event, 1000))
    assert sent["type"] == "error"
    assert "the relay.custom event:" in sent["error"]["message"]


def test_channel_message_limit_zero_is_unlimited() -> None:
    event = retrieved({"type": "input_audio", "audio": audio_b64(10), "transcript": "long"})
    assert channel_message(event, 0) == dumps(event)


def test_channel_message_fits_exactly_at_the_limit() -> None:
    event = text_done("")
    length = size(dumps(event))
    assert channel_message(event, length) == dumps(event)
    assert json.loads(channel_message(event, length - 1))["type"] == "error"


@pytest.mark.parametrize("char", ["é", "世", "🎧"])
def test_channel_message_measures_utf8_bytes_not_characters(char: str) -> None:
    wide = text_done(char * 600)
    narrow = text_done("e" * 600)
    limit = len(dumps(wide)) + 10  # the characters fit; their UTF-8 bytes do not
    assert size(dumps(wide)) > limit
    assert channel_message(narrow, limit) == dumps(narrow)
    assert isinstance(server_event(channel_message(narrow, limit)),
                      ResponseTextDoneEvent)
    assert json.loads(channel_message(wide, limit))["error"]["code"] == "event_too_large"


def test_channel_message_keeps_non_ascii_when_it_fits() -> None:
    event = text_done("Grüße 🎧" * 100)
    message = channel_message(event, LIMIT)
    assert message == dumps(event) and "🎧" in message
