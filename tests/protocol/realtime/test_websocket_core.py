"""The WebSocket session's protocol core, with plain synchronous calls."""

from __future__ import annotations

import json
from typing import Any

from relay.protocol.flood import MessageLimits
from relay.protocol.realtime.policy import locked_policy
from relay.protocol.realtime.websocket_core import WebSocketSessionCore


def core(session: dict[str, Any] | None = None, **kwargs: Any) -> WebSocketSessionCore:
    started = WebSocketSessionCore("sess_test", session or {"type": "realtime"},
                                   clock=lambda: 0.0, **kwargs)
    started.start()
    return started


def up(target: WebSocketSessionCore, kind: str, **fields: Any) -> None:
    target.upstream_message(json.dumps({"type": kind, **fields}))


def test_websocket_core_first_event_is_created_with_the_configured_session() -> None:
    ws = core({"type": "realtime", "instructions": "be brief",
               "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    [initial] = ws.drain_upstream()
    # The client's formats are its own: nothing is pinned on a WebSocket.
    assert initial["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    up(ws, "session.created", session={"type": "realtime", "instructions": ""})
    assert ws.drain_client() == []
    up(ws, "session.updated", session={"type": "realtime", "instructions": "be brief"})
    [created] = ws.drain_client()
    assert created["type"] == "session.created"
    assert created["session"]["instructions"] == "be brief"


def test_websocket_core_passes_audio_both_ways_and_answers_only_the_asker() -> None:
    ws = core()
    ws.drain_upstream()
    up(ws, "session.updated", session={"type": "realtime"})
    ws.drain_client()
    ws.client_message(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}))
    up(ws, "response.output_audio.delta", response_id="r", item_id="i", output_index=0,
       content_index=0, delta="AAAA")
    assert [e["type"] for e in ws.drain_upstream()] == ["input_audio_buffer.append"]
    assert [e["type"] for e in ws.drain_client()] == ["response.output_audio.delta"]
    up(ws, "session.updated", session={"type": "realtime"})  # nobody asked
    assert ws.drain_client() == []


def test_websocket_core_holds_the_policy_and_the_type() -> None:
    ws = core(policy=locked_policy({"instructions": "rules"}, ["instructions"]))
    ws.drain_upstream()
    for event in ({"type": "session.update", "session": {"instructions": "none"}},
                  {"type": "session.update", "session": {"type": "transcription"}},
                  {"type": "response.create", "response": {"instructions": "none"}}):
        ws.client_message(json.dumps(event))
    errors = ws.drain_client()
    assert [e["error"]["param"] for e in errors] == [
        "session.instructions", "session.type", "response.instructions"]
    assert ws.drain_upstream() == []


def test_websocket_core_transcription_refuses_responses() -> None:
    ws = core({"type": "transcription"})
    ws.drain_upstream()
    ws.client_message(json.dumps({"type": "response.create", "event_id": "c1"}))
    [error] = ws.drain_client()
    assert error["error"]["event_id"] == "c1" and ws.drain_upstream() == []


def test_websocket_core_conceals_tool_credentials_and_masks_their_echo() -> None:
    mcp = {"type": "mcp", "server_label": "n", "server_url": "https://mcp.example",
           "authorization": "sk-mcp-credential-1"}
    ws = core({"type": "realtime", "tools": [mcp]})
    assert ws.drain_upstream()[0]["session"]["tools"][0]["authorization"]
    up(ws, "session.updated", session={"type": "realtime", "tools": [mcp]})
    up(ws, "error", error={"type": "server_error", "message": "bad sk-mcp-credential-1"})
    seen = json.dumps(ws.drain_client())
    assert "credential-1" not in seen and "mcp.example" in seen


def test_websocket_core_a_flood_ends_the_session() -> None:
    ws = core(limits=MessageLimits(max_bytes=100, per_second=10, flood_drops=5))
    ws.client_message("x" * 200)
    assert ws.drain_client()[0]["error"]["code"] == "message_too_large"
    for _ in range(40):
        ws.client_message(json.dumps({"type": "input_audio_buffer.clear"}))
    assert ws.end_reason == "client flooded the session"
