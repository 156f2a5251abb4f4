"""JSON logs over a real call: lines about the call carry its id, no key ever appears."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp import ClientSession

from relay.client import CallClient, PcmSource
from relay.logs import configure_logging

from ..conftest import LOOPBACK, RelayFactory, base_url

SENTINEL = "sk-SENTINEL-never-logged-4f1c2e"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The root logger's lines, as the relay's JSON format writes them (nothing masked:
    the code itself must not log a key); restored after."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def test_logs_json_lines_carry_the_call_id_and_no_key(
        relay_factory: RelayFactory, json_logs: io.StringIO, speech: bytes) -> None:
    relay = await relay_factory(relay_api_keys=(SENTINEL,))
    client = CallClient(base_url(relay), PcmSource(speech), api_key=SENTINEL,
                        ice_addresses=LOOPBACK)
    try:
        await client.connect()
        await client.wait_for("output_audio_buffer.started", timeout=20)
        async with ClientSession() as http:  # a wrong key, refused
            url = f"{base_url(relay)}/stats"
            async with http.get(url, headers={"Authorization": "Bearer sk-wrong"}) as response:
                assert response.status == 401
        assert await client.hangup() == 200
    finally:
        await client.close()
    text = json_logs.getvalue()
    assert SENTINEL not in text
    lines = [json.loads(line) for line in text.splitlines()]
    about_call = [line for line in lines if line.get("call_id") == client.call_id]
    messages = [line["message"] for line in about_call]
    assert any(m.endswith("peer connection connected") for m in messages), messages
    assert any(m.endswith("closing (hangup)") for m in messages), messages
    assert {line["logger"] for line in about_call} >= {"relay.server.call_driver"}
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        if line.get("call_id"):
            assert line["message"].startswith(f"call {line['call_id']}: ")


def test_logs_mask_a_key_that_reaches_a_message() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        secrets = [SENTINEL]
        configure_logging("INFO", "json", secrets=secrets, stream=stream)
        logging.getLogger("relay.test").warning("oops: %s", SENTINEL)
        configure_logging("INFO", "text", secrets=secrets, stream=stream)
        logging.getLogger("relay.test").warning("oops: %s", SENTINEL)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    first, second = stream.getvalue().splitlines()
    assert json.loads(first)["message"] == "oops: ***" and "call_id" not in json.loads(first)
    assert second.endswith("WARNING relay.test: oops: ***")
    assert SENTINEL not in stream.getvalue()


def test_logs_name_the_worker_in_text_and_json() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging("INFO", "text", stream=stream, worker=1)
        logging.getLogger("relay.test").info("hello")
        configure_logging("INFO", "json", stream=stream, worker=1)
        logging.getLogger("relay.test").info("hello")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    text, line = stream.getvalue().splitlines()
    assert text.endswith(" INFO worker 1 relay.test: hello")
    assert json.loads(line)["worker"] == 1
