"""The one JSON reader for what strangers send: nesting depth, lone surrogates, bytes."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import InvalidRequest
from relay.protocol.events import parse_event
from relay.protocol.json_input import MAX_DEPTH, json_path, load_json

CI = bool(os.environ.get("CI"))
FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=CI)


def nested(depth: int, kind: str) -> str:
    """``depth`` levels of arrays (``[[...]]``) or objects (``{"a":{...}}``)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@FUZZ
@given(depth=st.integers(1, 20_000), kind=st.sampled_from(["array", "object"]))
def test_json_input_nesting_refused_past_the_limit_at_any_depth(depth: int, kind: str) -> None:
    text = nested(depth, kind)
    if depth <= MAX_DEPTH:
        assert load_json(text) is not None
    else:
        with pytest.raises(InvalidRequest) as caught:
            load_json(text)
        assert caught.value.code == "invalid_json" and "deeper" in caught.value.message


@pytest.mark.parametrize("text", [
    "[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000,
    "[" * 100_000, '{"type":"x","v":' + "[" * 990 + "]" * 990 + "}",
])
def test_json_input_deep_or_broken_nesting_is_invalid_json(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_event(text)
    assert caught.value.code == "invalid_json"


surrogates = st.integers(0xD800, 0xDFFF).map(lambda code: f"\\u{code:04x}")


@FUZZ
@given(before=st.text(max_size=10), escape=surrogates, after=st.text(max_size=10),
       where=st.sampled_from(["value", "key", "list"]))
def test_json_input_lone_surrogates_refused_naming_the_field(
        before: str, escape: str, after: str, where: str) -> None:
    text = json.dumps(before)[1:-1] + escape + json.dumps(after)[1:-1]
    body = {"value": '{"type":"x","session":{"instructions":"%s"}}',
            "key": '{"type":"x","metadata":{"%s":1}}',
            "list": '{"type":"x","a":[0,"%s"]}'}[where] % text
    # (``before`` and ``after`` are escaped too: their astral characters become pairs of
    # escapes, which never pair up with the lone one between them.)
    with pytest.raises(InvalidRequest) as caught:
        parse_event(body)
    error = caught.value
    assert error.code == "invalid_value" and "surrogate" in error.message, body
    assert error.param == {"value": "session.instructions", "key": "metadata",
                           "list": "a[1]"}[where]


def test_json_input_surrogate_pairs_and_other_text_pass() -> None:
    assert load_json('{"t":"\\ud83d\\ude00 \\u00e9 \\\\ud800"}') == {"t": "😀 é \\ud800"}
    assert load_json(b'{"t":"\xc3\xa9"}') == {"t": "é"}


@pytest.mark.parametrize("data", [b"\xff\xfe{}", b'{"a":"\xed\xa0\x80"}', b"\x80"])
def test_json_input_bytes_that_are_not_utf8_are_invalid_json(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        load_json(data, what="The body", param="session")
    assert (caught.value.code, caught.value.param) == ("invalid_json", "session")
    assert caught.value.message.startswith("The body")


def test_json_input_paths_name_fields_and_items() -> None:
    assert json_path(None, ("a", 2, "b")) == "a[2].b"
    assert json_path("session", ("tools", 0)) == "session.tools[0]"
    assert json_path("session", ()) == "session"
