"""The upstream's secrets masked in what the upstream says, before any client sees it."""

from __future__ import annotations

import json

from relay.protocol.realtime.call_core import CallCore
from relay.protocol.redact import MASK, Redactor

KEY = "sk-upstream-key-0123456789"


def test_redact_masks_each_secret_in_text_and_bytes() -> None:
    redact = Redactor([KEY, f"Bearer {KEY}", "short"])
    assert redact(f"bad key: Bearer {KEY}!") == f"bad key: {MASK}!"
    assert redact(f"{KEY} {KEY}".encode()) == f"{MASK} {MASK}".encode()
    assert redact("short words stay") == "short words stay"  # too short to be a secret
    assert not Redactor() and Redactor()("as it was") == "as it was"


def test_redact_call_core_never_shows_a_client_the_upstream_key() -> None:
    core = CallCore("rtc_redact", {"type": "realtime"}, max_playout_samples=24000,
                    clock=lambda: 0.0, redact=Redactor([KEY]))
    core.channel_opened()
    core.attach_sideband("sideband-1")
    core.upstream_message(json.dumps({"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_api_key",
        "message": f"Incorrect API key provided: {KEY}"}}))
    core.upstream_message(json.dumps({"type": "something.new", "note": KEY}).encode())
    core.upstream_closed(4001, f"bad key {KEY}")
    shown = json.dumps(core.drain_client() + core.drain_sideband("sideband-1"))
    assert KEY not in shown
    assert shown.count(MASK) >= 5, shown  # each kept its place, masked
