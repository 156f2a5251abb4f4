"""``idle_timeout_ms`` over WebRTC, through the relay and the embedded server: the
microphone streams silence, and after the timeout the server says so and answers."""

from __future__ import annotations

import time

from relay.client import CallClient

from ..support.realtime import server_event

IDLE = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "idle_timeout_ms": 5000}}}}


async def test_idle_timeout_over_webrtc_triggers_and_the_reply_plays(make_client) -> None:
    client: CallClient = make_client(session=IDLE)  # a silent microphone
    await client.connect()
    opened = time.monotonic()
    timeout = await client.wait_for("input_audio_buffer.timeout_triggered", timeout=15)
    waited = time.monotonic() - opened
    assert 4.5 < waited < 8.0, waited
    assert timeout["audio_end_ms"] - timeout["audio_start_ms"] >= 5000
    await client.wait_for("output_audio_buffer.stopped", timeout=15)
    types = client.types()
    turn = ["input_audio_buffer.timeout_triggered", "input_audio_buffer.committed",
            "response.created", "output_audio_buffer.started", "response.done",
            "output_audio_buffer.stopped"]
    positions = [types.index(kind) for kind in turn]
    assert positions == sorted(positions), types
    transcript = next(event["transcript"] for _, event in client.events
                      if event["type"] == "response.output_audio_transcript.done")
    assert transcript == "Are you still there?"
    for _, event in client.events:
        server_event(event)
    assert await client.hangup() == 200
