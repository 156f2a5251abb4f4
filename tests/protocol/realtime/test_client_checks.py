"""The checks a Realtime client event passes on a call and a WebSocket session alike
(relay.protocol.realtime.client_checks)."""

from __future__ import annotations

import pytest

from relay.errors import InvalidRequest
from relay.protocol.realtime.client_checks import (
    check_response_overrides,
    check_supported,
    requested_update,
)
from relay.protocol.realtime.policy import locked_policy


@pytest.mark.parametrize("kind", ["response.create", "response.cancel",
                                  "output_audio_buffer.clear"])
def test_client_checks_transcription_refuses_response_events(kind: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_supported(kind, "transcription")
    assert refused.value.param == "type" and kind in str(refused.value)
    check_supported(kind, "realtime")
    check_supported("input_audio_buffer.commit", "transcription")


def test_client_checks_partial_update_gets_the_sessions_type() -> None:
    session = requested_update({"type": "session.update", "session": {"instructions": "hi"}},
                               "realtime", "call")
    assert session["type"] == "realtime" and session["instructions"] == "hi"


def test_client_checks_update_refuses_a_new_type_or_no_session() -> None:
    with pytest.raises(InvalidRequest) as changed:
        requested_update({"type": "session.update", "session": {"type": "transcription"}},
                         "realtime", "call")
    assert changed.value.param == "session.type"
    assert "during a call: this call is a realtime session" in str(changed.value)
    with pytest.raises(InvalidRequest) as missing:
        requested_update({"type": "session.update"}, "realtime", "session")
    assert missing.value.code == "missing_required_parameter"


def test_client_checks_response_overrides_hold_the_locked_fields() -> None:
    policy = locked_policy({"instructions": "rules"}, ["instructions"])
    with pytest.raises(InvalidRequest) as refused:
        check_response_overrides({"type": "response.create",
                                  "response": {"instructions": "none"}}, policy)
    assert refused.value.param == "response.instructions"
    check_response_overrides({"type": "response.create",
                              "response": {"instructions": "rules"}}, policy)
    check_response_overrides({"type": "response.create"}, policy)
