"""Hostile messages on GPT-Live's primary WebSocket, fed to its core directly (sans-I/O):
every one is answered with an ``error`` event the official types accept, or passed on,
never an exception; nothing but a checked ``session.start`` opens the upstream session."""

from __future__ import annotations

import json
import logging
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.live import ServerEvent

from relay.protocol.live.live_config import sealed_live_config
from relay.protocol.live.live_events import PRIMARY_CLIENT_EVENTS
from relay.protocol.live.primary_core import LiveWebSocketCore

from .test_fuzz_core import FUZZ, deep, json_values, messages

SERVER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
UNSET = object()

configs = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["gpt-live-1", ""]) | json_values,
    "instructions": st.text(max_size=20) | json_values,
    "audio": st.fixed_dictionaries({}, optional={
        "format": st.sampled_from([{"type": "audio/pcm", "rate": 24000}]) | json_values,
        "output": st.fixed_dictionaries({}, optional={"voice": json_values}) | json_values,
    }) | json_values,
    "delegation": st.sampled_from([None, {"type": "client"}]) | json_values,
    "client": json_values, "triggers": json_values, "input": json_values,
    "idle_timeout_s": json_values, "nonsense": json_values,
})
live_events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(PRIMARY_CLIENT_EVENTS | {"transport.dtmf.send", ""}))
     | st.text(max_size=30)},
    optional={"event_id": json_values, "session": configs | json_values | deep,
              "audio": json_values, "content": json_values, "delegation_id": json_values})
live_messages = live_events.map(json.dumps) | messages


def core() -> LiveWebSocketCore:
    sealed = sealed_live_config({"type": "live", "model": "gpt-live-1",
                                 "audio": {"output": {"voice": "cedar"}}})
    return LiveWebSocketCore("live_fuzz", sealed, clock=lambda: 0.0, offline=True,
                             policy={"instructions": "Be brief."}, unset=UNSET)


@FUZZ
@given(batch=st.lists(live_messages, min_size=1, max_size=8))
def test_fuzz_primary_core_messages_get_errors_never_exceptions(
        batch: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    live = core()
    for message in batch:
        live.client_message(message)
        for event in live.drain_client():
            assert event["type"] == "error"
            SERVER.validate_python(event)
        for event in live.drain_upstream():
            json.dumps(event, ensure_ascii=False).encode()
            if event["type"] == "session.start":
                # Only a start the relay checked, sealed and locked goes upstream.
                assert event["session"]["audio"]["output"]["voice"] == "cedar"
                assert event["session"]["instructions"] == "Be brief."
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@FUZZ
@given(message=live_messages)
def test_fuzz_primary_core_upstream_messages_never_raise(message: Any) -> None:
    live = core()
    live.upstream_message(message)
    live.upstream_closed(1011, str(message)[:50])
    live.drain_client()
    live.drain_upstream()
