"""Transcription calls end to end: the official ``openai`` package (base URL only) mints a
key for a transcription session and creates the call, a real aiortc peer speaks into it,
and the data channel carries the turn's transcript, typed as the package types it, and
no response: the call has no voice."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pydantic
from aiohttp import ClientSession
from openai import AsyncOpenAI
from openai.types.realtime import ClientSecretCreateResponse, RealtimeServerEvent
from openai.types.realtime.realtime_transcription_session_create_response import (
    RealtimeTranscriptionSessionCreateResponse,
)

from relay.client import CallClient, PcmSource

from ..conftest import LOOPBACK, RelayFactory, base_url, live_calls
from ..support.offer import OfferPeer
from ..support.speech import SUNNY, SUNNY_WORDS, espeak, needs_espeak, needs_speech, words

pytestmark = [needs_speech, needs_espeak]

SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
CAPTIONS: dict[str, Any] = {
    "type": "transcription",
    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}},
    "include": ["item.input_audio_transcription.logprobs"],
}
COMPLETED = "conversation.item.input_audio_transcription.completed"


async def test_transcription_call_captions_speech_and_never_answers(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    url = base_url(server)
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-server") as sdk:
        raw = await sdk.realtime.client_secrets.with_raw_response.create(session=CAPTIONS)
    minted = pydantic.TypeAdapter(ClientSecretCreateResponse).validate_python(
        json.loads(raw.text))
    assert isinstance(minted.session, RealtimeTranscriptionSessionCreateResponse)
    assert minted.session.audio is not None and minted.session.audio.input is not None
    assert minted.session.audio.input.transcription is not None
    assert minted.session.audio.input.transcription.model == "gpt-4o-transcribe"

    pcm = bytes(48 * 300) + espeak(SUNNY) + bytes(48 * 1500)
    client = CallClient(url, PcmSource(pcm), api_key=minted.value, ice_addresses=LOOPBACK)
    try:
        await client.connect()
        created = await client.wait_for("session.created")
        assert created["session"]["type"] == "transcription"
        completed = await client.wait_for(COMPLETED, timeout=60)
        client.send({"type": "response.create", "event_id": "evt_talk"})
        error = await client.wait_for("error")
        # The call goes on: it still takes an update and answers it.
        client.send({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"transcription": {"prompt": "x"}}}}})
        await client.wait_for("session.updated")
        async with ClientSession() as http:
            async with http.get(f"{url}/v1/realtime/calls/{client.call_id}",
                                headers={"Authorization": "Bearer sk-server"}) as r:
                view = await r.json()
            async with http.get(f"{url}/metrics",
                                headers={"Authorization": "Bearer sk-server"}) as r:
                metrics = await r.text()
        heard = np.frombuffer(bytes(client.received), dtype="<i2")
        assert live_calls(server) == 1
    finally:
        await client.close()
    assert SUNNY_WORDS <= words(completed["transcript"]), completed["transcript"]
    assert len(completed["logprobs"]) == len(completed["transcript"].split())
    assert all(p["logprob"] <= 0 for p in completed["logprobs"])
    types = client.types()
    assert "conversation.item.input_audio_transcription.delta" in types
    assert not [t for t in types if t.startswith(("response.", "output_audio_buffer."))]
    assert error["error"]["event_id"] == "evt_talk"
    assert "transcription session" in error["error"]["message"]
    for _, event in client.events:
        SERVER_EVENT.validate_python(event)
    # No voice: whatever the track carried is silence.
    assert heard.size == 0 or int(np.abs(heard.astype(np.int32)).max()) < 64
    assert view["session_type"] == "transcription"
    assert ('relay_sessions_created_total{transport="webrtc",type="transcription"} 1.0'
            in metrics)


async def test_transcription_call_by_the_sdk_multipart_form(relay) -> None:
    async with AsyncOpenAI(base_url=f"{base_url(relay)}/v1", api_key="sk-test") as sdk, \
            OfferPeer() as peer:
        raw = await sdk.realtime.calls.with_raw_response.create(
            sdp=await peer.offer(), session=CAPTIONS)
        call_id = raw.headers["Location"].rsplit("/", 1)[-1]
        await peer.accept(raw.text)
        first = await peer.next_event()
        await sdk.realtime.calls.hangup(call_id)
    parsed = SERVER_EVENT.validate_python(first)
    assert parsed.type == "session.created" and parsed.session.type == "transcription"
    assert first["session"]["include"] == CAPTIONS["include"]
