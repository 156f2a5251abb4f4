"""A fork's configuration and conversation, without I/O: the stored configuration with
only the overrides a ``MediaSessionForkConfig`` has (anything else refused, naming the
field), and the conversation rebuilt from a recording's event lines as the call built it;
the ``session.start`` carrying it is a valid ``openai.types.live`` client event."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.live import ClientEvent, ForkSessionConfigParam, MediaSessionForkConfigParam

from relay.errors import InvalidRequest
from relay.protocol.live.live_fork import FORK_FIELDS, WEBSOCKET_FORK_FIELDS, fork_config
from relay.protocol.live.live_restore import (
    MAX_HISTORY_MESSAGES,
    RECORDED_TYPES,
    recorded_conversation,
    with_history,
)
from relay.protocol.live.primary_core import LiveWebSocketCore

STORED = {"model": "gpt-live-1", "instructions": "Be brief.", "store": True,
          "client": {"data_channel": {"allowed_client_events": ["session.close"],
                                      "allowed_server_events": ["session.started"]}}}
RESPONSES = {"type": "responses", "acknowledgement_delay_ms": 400,
             "responses": {"model": "gpt-5", "instructions": "Look things up."}}


def line(direction: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": 0.1, "dir": direction, "event": {"type": kind, **fields}}


def test_fork_fields_are_the_official_override_fields() -> None:
    assert set(FORK_FIELDS) == set(MediaSessionForkConfigParam.__annotations__)


def test_fork_config_inherits_the_stored_configuration() -> None:
    assert fork_config(STORED, None) == STORED
    assert fork_config(STORED, {}) == STORED
    assert fork_config(STORED, {}) is not STORED


def test_fork_config_store_and_client_permissions_override() -> None:
    forked = fork_config(STORED, {"store": False, "client": {"data_channel": {
        "allowed_server_events": ["session.started", "error"]}}})
    assert forked["store"] is False
    assert forked["client"]["data_channel"] == {
        "allowed_client_events": ["session.close"],  # omitted: inherited
        "allowed_server_events": ["session.started", "error"]}
    assert STORED["client"]["data_channel"]["allowed_server_events"] == ["session.started"]


@pytest.mark.parametrize(("overrides", "code", "param"), [
    ({"instructions": "Be a pirate."}, "unknown_parameter", "session.instructions"),
    ({"model": "gpt-live-1.1"}, "unknown_parameter", "session.model"),
    ({"audio": {"format": {"type": "audio/pcm", "rate": 24000}}}, "unknown_parameter",
     "session.audio"),
    ({"input": []}, "unknown_parameter", "session.input"),
    ({"store": "yes"}, "invalid_type", "session.store"),
    ({"client": []}, "invalid_type", "session.client"),
    ("store", "invalid_type", "session"),
    ({"delegation": {"type": "client"}}, "invalid_value", "session.delegation.type"),
    ({"delegation": {"type": "responses", "responses": {}}}, "invalid_value",
     "session.delegation.type"),  # the stored session does not delegate to Responses
])
def test_fork_config_refuses_what_a_fork_cannot_change(overrides: Any, code: str,
                                                       param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        fork_config(STORED, overrides)
    assert (refused.value.code, refused.value.param) == (code, param)


def test_fork_config_adjusts_a_responses_delegation_keeping_omitted_settings() -> None:
    stored = {**STORED, "delegation": RESPONSES}
    forked = fork_config(stored, {"delegation": {"type": "responses",
                                                 "acknowledgement_delay_ms": 0,
                                                 "responses": {"instructions": "Be quick."}}})
    assert forked["delegation"] == {"type": "responses", "acknowledgement_delay_ms": 0,
                                    "responses": {"model": "gpt-5",
                                                  "instructions": "Be quick."}}


def test_recorded_conversation_is_the_calls_turns_and_accepted_context() -> None:
    records = [
        line("relay_to_upstream", "session.start", session=STORED),
        line("upstream_to_relay", "session.started", session={"id": "live_x"}),
        line("upstream_to_relay", "session.input_transcript.delta", delta="the code "),
        line("relay_to_client", "session.input_transcript.delta", delta="the code "),
        line("upstream_to_relay", "session.input_transcript.delta", delta="is pineapple"),
        line("upstream_to_relay", "session.output_transcript.delta", delta="Noted."),
        line("relay_to_upstream", "session.instructions.append", event_id="c1",
             content="Speak slowly."),
        line("relay_to_upstream", "session.thinking.append", event_id="c2",
             content="refused"),
        line("upstream_to_relay", "error", error={"type": "invalid_request_error",
                                                  "code": "x", "message": "no",
                                                  "client_event_id": "c2"}),
        line("upstream_to_relay", "session.updated",
             session={"id": "live_x", "triggers": [{"type": "t"}]}),
        {"t": 1, "dir": "upstream_to_relay", "event": {"unparsed": "{"}},
        line("upstream_to_relay", "session.output_transcript.delta", delta="Slowly now."),
    ]
    recorded = recorded_conversation(records)
    assert [(m["role"], m["content"][0]["text"]) for m in recorded.history] == [
        ("user", "the code is pineapple"), ("assistant", "Noted."),
        ("developer", "Speak slowly."), ("assistant", "Slowly now.")]
    assert recorded.session == {"id": "live_x", "triggers": [{"type": "t"}]}
    assert {r["event"].get("type") for r in records} - {"session.start",
                                                         "session.started", None} \
        <= RECORDED_TYPES


def test_forked_start_is_a_valid_client_event_and_bounded() -> None:
    history = [{"type": "message", "role": "user" if i % 2 else "assistant",
                "content": [{"type": "input_text" if i % 2 else "output_text",
                             "text": f"turn {i}"}]} for i in range(300)]
    own = [{"type": "message", "role": "developer",
            "content": [{"type": "input_text", "text": "Context."}]}]
    config, carried, dropped = with_history({**STORED, "input": own}, None, history)
    assert len(config["input"]) == MAX_HISTORY_MESSAGES
    assert config["input"][0] == own[0] and config["input"][-1] == history[-1]
    assert (carried, dropped) == (MAX_HISTORY_MESSAGES - 1, 300 - carried)
    start = {"type": "session.start",
             "session": {k: v for k, v in config.items() if k != "client"}}
    pydantic.TypeAdapter(ClientEvent).validate_python(start)


def test_websocket_fork_fields_are_the_official_ones() -> None:
    assert set(WEBSOCKET_FORK_FIELDS) == set(ForkSessionConfigParam.__annotations__) - {"client"}


def test_websocket_fork_config_sets_its_audio_format_and_drops_webrtc_fields() -> None:
    stored = {**STORED, "audio": {"output": {"voice": "cedar"}},
              "wake_policy": {"type": "speech"}, "idle_timeout_s": 30}
    pcm16 = {"type": "audio/pcm", "rate": 16000}
    forked = fork_config(stored, {"audio": {"format": pcm16}}, media=False)
    assert forked["audio"] == {"output": {"voice": "cedar"}, "format": pcm16}
    assert not {"client", "wake_policy", "idle_timeout_s"} & set(forked)
    for overrides, param in (({"client": {}}, "session.client"),
                             ({"audio": {"output": {"voice": "marin"}}}, "session.audio.output"),
                             ({"model": "gpt-live-1"}, "session.model")):
        with pytest.raises(InvalidRequest) as refused:
            fork_config(stored, overrides, media=False)
        assert refused.value.param == param


def test_primary_core_fork_starts_with_the_stored_configuration_under_overrides() -> None:
    base, _, _ = with_history({"model": "gpt-live-1", "instructions": "Be brief.",
                               "store": True}, None, [
        {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                         "text": "hello"}]}])
    core = LiveWebSocketCore("live_fork", None, clock=lambda: 0.0, fork=base)
    core.client_message(json.dumps({"type": "session.start", "event_id": "s1",
                                    "session": {"instructions": "No."}}))
    refused, = core.drain_client()
    assert (refused["error"]["param"], refused["client_event_id"]) == (
        "session.instructions", "s1")
    assert core.drain_upstream() == []
    core.client_message(json.dumps({"type": "session.start", "event_id": "s2",
                                    "session": {"store": False}}))
    start, = core.drain_upstream()
    assert start == {"type": "session.start", "event_id": "s2",
                     "session": {**base, "store": False}}
    pydantic.TypeAdapter(ClientEvent).validate_python(start)
