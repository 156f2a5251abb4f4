"""Hostile data-channel and sideband messages, fed to the call core directly (sans-I/O):
every one is answered with ``error`` events or handled, never an exception or a traceback."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.protocol.realtime.call_core import CallCore
from relay.protocol.realtime.policy import locked_policy

#: CI runs the same examples every time (a fresh random draw must not block a landing);
#: a developer's run explores new ones.
CI = bool(os.environ.get("CI"))
FUZZ = settings(max_examples=150, deadline=None, database=None,
                derandomize=CI,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

EVENT_TYPES = ["session.update", "response.create", "response.cancel",
               "conversation.item.create", "conversation.item.truncate",
               "conversation.item.delete", "output_audio_buffer.clear",
               "input_audio_buffer.append", "input_audio_buffer.commit", "nonsense", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)

events = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES) | st.text(max_size=30)},
    optional={"event_id": json_values, "session": json_values, "response": json_values,
              "item": json_values, "item_id": json_values, "audio_end_ms": json_values,
              "content_index": json_values, "audio": json_values})

#: Nesting to any depth (Python's parser recurses per level), as a whole message or as
#: an event's field.
deep = st.tuples(st.integers(1, 5000), st.booleans()).map(
    lambda dk: "[" * dk[0] + "]" * dk[0] if dk[1] else '{"a":' * dk[0] + "1" + "}" * dk[0])
deep_events = st.tuples(st.sampled_from(EVENT_TYPES), st.sampled_from(
    ["session", "response", "item", "item_id"]), deep).map(
    lambda tfd: f'{{"type":"{tfd[0]}","{tfd[1]}":{tfd[2]}}}')
#: Events carrying a lone surrogate (as a JSON escape) where text belongs.
surrogate_events = st.tuples(st.integers(0xD800, 0xDFFF), st.sampled_from([
    '{"type":"session.update","session":{"instructions":"%s"}}',
    '{"type":"response.create","response":{"instructions":"a%s"}}',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user",'
    '"content":[{"type":"input_text","text":"%s"}]}}',
    '{"type":"conversation.item.truncate","item_id":"%s","content_index":0,"audio_end_ms":1}',
    '{"type":"response.cancel","event_id":"e","%s":1}'])).map(
    lambda cw: cw[1] % f"\\u{cw[0]:04x}")

messages = (events.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=200)
            | st.binary(max_size=200) | deep | deep_events | surrogate_events)

OPERATOR = {"type": "realtime", "instructions": "Be brief."}


def core() -> CallCore:
    c = CallCore("rtc_fuzz", dict(OPERATOR), max_playout_samples=24000, clock=lambda: 0.0,
                 policy=locked_policy(OPERATOR, ("instructions", "tools", "audio.output.voice")))
    c.start()
    c.drain_upstream()
    c.channel_opened()
    c.attach_sideband("sideband-1")
    return c


def _check_outputs(c: CallCore) -> None:
    for event in c.drain_client() + c.drain_sideband("sideband-1"):
        assert event["type"] == "error" or event["type"].startswith("output_audio_buffer.")
        if event["type"] == "error":
            assert set(event["error"]) >= {"message", "type", "code"}
    for event in c.drain_upstream():
        # What goes upstream is JSON a UTF-8 WebSocket can carry (no lone surrogate).
        json.dumps(event, ensure_ascii=False).encode()


@FUZZ
@given(batch=st.lists(st.tuples(messages, st.sampled_from(["client", "sideband-1"])),
                      min_size=1, max_size=8))
def test_fuzz_core_messages_get_errors_never_exceptions(
        batch: list[tuple[Any, str]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    c = core()
    for message, source in batch:
        c.client_message(message, source)
        _check_outputs(c)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@FUZZ
@given(message=messages)
def test_fuzz_core_upstream_messages_never_raise(message: Any) -> None:
    c = core()
    c.upstream_message(message)
    c.drain_client()
    c.drain_upstream()
