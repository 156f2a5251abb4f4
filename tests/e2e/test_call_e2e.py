"""End to end over real loopback sockets: aiortc client → relay → embedded upstream → back."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from aiohttp import ClientSession

from relay.client import CallClient

from ..conftest import base_url, live_calls

FAST_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 200}}}}


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


async def test_call_speech_is_parroted_back_with_events_in_order(make_client, speech) -> None:
    client: CallClient = make_client(speech, session=FAST_VAD)
    await client.connect()
    await client.wait_for("output_audio_buffer.stopped", timeout=30)
    await asyncio.sleep(0.3)
    types = client.types()
    assert types[0] == "session.created"
    assert "response.output_audio.delta" not in types
    turn = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed", "response.created", "output_audio_buffer.started",
            "response.done", "output_audio_buffer.stopped"]
    positions = [types.index(kind) for kind in turn]
    assert positions == sorted(positions), types
    # The reply is the utterance: about as long and as loud as what was said.
    reply = bytes(client.received)
    frames = [reply[i:i + 960] for i in range(0, len(reply), 960)]
    voiced = sum(1 for f in frames if rms(f) > 300) * 0.02
    spoken = sum(1 for i in range(0, len(speech), 960) if rms(speech[i:i + 960]) > 300) * 0.02
    assert abs(voiced - spoken) < 0.25, (voiced, spoken)
    assert await client.hangup() == 200


async def test_call_multipart_session_is_applied(make_client) -> None:
    session = {"type": "realtime", "instructions": "Speak like a pirate.",
               "audio": {"output": {"voice": "verse"}}}
    client: CallClient = make_client(session=session)
    await client.connect()
    created = await client.wait_for("session.created")
    assert created["session"]["instructions"] == "Speak like a pirate."
    assert created["session"]["audio"]["output"]["voice"] == "verse"
    assert client.types()[0] == "session.created"


async def test_call_negotiated_data_channel_works(make_client) -> None:
    client: CallClient = make_client(negotiated_dcid=3)
    await client.connect()
    await client.wait_for("session.created")
    client.send({"type": "response.create"})
    await client.wait_for("response.done", timeout=15)


async def test_call_bad_data_channel_json_gets_error_and_call_goes_on(make_client) -> None:
    client: CallClient = make_client()
    await client.connect()
    await client.wait_for("session.created")
    client.channel.send("{not json")
    error = await client.wait_for("error")
    assert error["error"]["code"] == "invalid_json"
    client.channel.send(json.dumps({"no": "type"}))
    await client.wait_for("error", lambda e: e["error"]["param"] == "type")
    client.send({"type": "session.update", "session": {"instructions": "still here"}})
    updated = await client.wait_for("session.updated",
                                    lambda e: e["session"]["instructions"] == "still here")
    assert updated


async def test_call_hangup_then_404(relay, make_client) -> None:
    client: CallClient = make_client()
    await client.connect()
    assert live_calls(relay) == 1
    assert await client.hangup() == 200
    assert live_calls(relay) == 0
    async with ClientSession() as http:
        url = f"{base_url(relay)}/v1/realtime/calls/{client.call_id}/hangup"
        async with http.post(url) as response:
            assert response.status == 404
            assert await response.json() == {"error": {
                "message": "No session found for the provided call_id",
                "type": "invalid_request_error", "code": "call_id_not_found", "param": ""}}


async def test_call_garbage_sdp_is_a_400_json_error(relay) -> None:
    async with ClientSession() as http:
        for body in ("hello", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nnonsense"):
            async with http.post(f"{base_url(relay)}/v1/realtime/calls", data=body,
                                 headers={"Content-Type": "application/sdp"}) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert error["type"] == "invalid_request_error" and error["message"]
    assert live_calls(relay) == 0
