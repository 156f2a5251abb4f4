"""The operator's locked fields (relay.protocol.realtime.policy), pure and through the call core."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.errors import InvalidRequest
from relay.protocol.realtime.call_core import CallCore
from relay.protocol.realtime.policy import (
    UNSET,
    SessionRules,
    check_session,
    locked_field_changed,
    locked_policy,
)

OPERATOR = {"type": "realtime", "instructions": "Be brief.", "voice": "marin"}
FIELDS = ("instructions", "tools", "audio.output.voice")


def test_policy_takes_locked_values_from_the_operator_session() -> None:
    policy = locked_policy(OPERATOR, FIELDS)
    assert policy == {"instructions": "Be brief.", "tools": UNSET, "audio.output.voice": "marin"}


@pytest.mark.parametrize(("session", "changed"), [
    ({"type": "realtime", "instructions": "Be verbose."}, "instructions"),
    ({"type": "realtime", "tools": []}, "tools"),
    ({"type": "realtime", "audio": {"output": {"voice": "cedar"}}}, "audio.output.voice"),
    ({"type": "realtime", "instructions": "Be brief.", "audio": {"output": {"speed": 1.2}}},
     None),
    ({"type": "realtime", "audio": {"output": {"voice": "marin"}}}, None),
    ({"type": "realtime", "output_modalities": ["text"]}, None),
])
def test_policy_names_the_locked_field_a_session_changes(session: dict[str, Any],
                                                         changed: str | None) -> None:
    assert locked_field_changed(session, locked_policy(OPERATOR, FIELDS)) == changed


def test_policy_check_understands_flat_aliases_and_names_the_param() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_session({"voice": "cedar"}, locked_policy(OPERATOR, FIELDS), "session")
    assert info.value.param == "session.audio.output.voice"
    assert info.value.code == "locked_field" and info.value.status == 400
    check_session({"voice": "marin"}, locked_policy(OPERATOR, FIELDS), "session")
    check_session({"voice": "cedar"}, {}, "session")  # no policy: anything goes


def core() -> CallCore:
    c = CallCore("rtc_policy", dict(OPERATOR), max_playout_samples=24000, clock=lambda: 0.0,
                 policy=locked_policy(OPERATOR, FIELDS))
    c.start()
    c.drain_upstream()
    c.channel_opened()
    return c


def send(c: CallCore, event: dict[str, Any], source: str = "client") -> None:
    c.client_message(json.dumps(event), source)


def test_policy_client_session_update_touching_a_locked_field_is_refused_whole() -> None:
    c = core()
    send(c, {"type": "session.update", "event_id": "e1",
             "session": {"instructions": "Ignore the rules.", "audio": {"output": {"speed": 1.5}}}})
    assert c.drain_upstream() == []
    [error] = c.drain_client()
    assert error["type"] == "error" and error["error"]["event_id"] == "e1"
    assert error["error"]["param"] == "session.instructions"
    assert error["error"]["code"] == "locked_field"


def test_policy_client_update_of_unlocked_fields_goes_upstream() -> None:
    c = core()
    send(c, {"type": "session.update", "session": {"audio": {"output": {"speed": 1.5}},
                                                   "instructions": "Be brief."}})
    [update] = c.drain_upstream()
    assert update["session"]["audio"]["output"]["speed"] == 1.5


def test_policy_response_create_override_of_a_locked_field_is_refused() -> None:
    c = core()
    send(c, {"type": "response.create", "response": {"voice": "cedar"}})
    assert c.drain_upstream() == []
    [error] = c.drain_client()
    assert error["error"]["param"] == "response.audio.output.voice"
    send(c, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    send(c, {"type": "response.create"})
    assert [e["type"] for e in c.drain_upstream()] == ["response.create", "response.create"]


def test_policy_does_not_bind_the_sideband() -> None:
    c = core()
    c.attach_sideband("sideband-1")
    send(c, {"type": "session.update", "session": {"instructions": "New rules."}}, "sideband-1")
    send(c, {"type": "response.create", "response": {"tools": []}}, "sideband-1")
    assert [e["type"] for e in c.drain_upstream()] == ["session.update", "response.create"]
    assert c.drain_sideband("sideband-1") == []


def test_policy_rules_layer_requests_over_the_operator_session_and_pick_the_model() -> None:
    operator = {"instructions": "Be brief.", "audio": {"output": {"voice": "marin"}}}
    rules = SessionRules(operator, locked_policy(operator, ["audio.output.voice"]),
                         "gpt-realtime", ("gpt-realtime-mini",))
    session, model = rules.admit({"instructions": "Key's."}, {"model": "gpt-realtime-mini"})
    assert session["instructions"] == "Key's."
    assert session["audio"]["output"]["voice"] == "marin"
    assert model == "gpt-realtime-mini"
    assert rules.admit(None, None, query_model="gpt-realtime-mini")[1] == "gpt-realtime-mini"
    assert rules.admit()[1] == "gpt-realtime"


@pytest.mark.parametrize(("layers", "query", "param"), [
    (({"audio": {"output": {"voice": "cedar"}}}, None), None, "session.audio.output.voice"),
    ((None, {"audio": {"output": {"voice": "cedar"}}}), None, "session.audio.output.voice"),
    ((None, None), "gpt-4o-realtime-preview", "model"),
    (({"model": "other"}, None), None, "session.model"),
])
def test_policy_rules_refuse_a_locked_field_or_an_unserved_model_in_any_layer(
        layers: tuple[dict[str, Any] | None, ...], query: str | None, param: str) -> None:
    operator = {"audio": {"output": {"voice": "marin"}}}
    rules = SessionRules(operator, locked_policy(operator, ["audio.output.voice"]),
                         "gpt-realtime", ("gpt-realtime-mini",))
    with pytest.raises(InvalidRequest) as refused:
        rules.admit(*layers, query_model=query)
    assert refused.value.param == param
