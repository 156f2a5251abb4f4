"""GPT-Live's wake policy and idle timeout end to end: the official ``openai`` package
creates the session (``wake_policy`` and ``idle_timeout_s``), a real aiortc peer streams
its microphone over loopback to the relay, and the embedded upstream answers.

Silence: no audio goes upstream and nothing answers. Speech: ``session.resumed``, then the
model hears the whole utterance (its first word too: the pre-roll) and replies. Silence
longer than the timeout: ``session.paused``, and the microphone stops going upstream.
Speech again: ``session.resumed`` and another reply. The hangup's usage splits the session
into active and paused seconds. A hosted-shaped upstream shows the same from its side (no
audio asleep, the pre-roll's quiet lead-in on waking), and a sideband hears the
transitions. Every event validates against ``openai.types.live``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pydantic
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from openai.types.live import ServerEvent
from openai.types.live.connect_server_event import ConnectServerEvent
from websockets.asyncio.server import ServerConnection, serve

from ..conftest import RelayFactory, base_url
from ..support.offer import OfferPeer
from ..support.speech import needs_speech, words
from .test_live_sdk import Loudness, sdk

SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
CONNECT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ConnectServerEvent)
IDLE_TIMEOUT_S = 2
SESSION = {"model": "gpt-live-1", "instructions": "Answer briefly.",
           "wake_policy": {"type": "speech", "vad_threshold": 0.5},
           "idle_timeout_s": IDLE_TIMEOUT_S}


async def audio_up(server: TestServer, session_id: str) -> float:
    """Seconds of microphone audio the relay has sent upstream for the session (its view)."""
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/v1/live/sessions/{session_id}",
                            headers={"Authorization": "Bearer sk-test"}) as response:
            assert response.status == 200
            view = await response.json()
    return float(view["audio_seconds"]["up"])


class Timeline:
    """The data channel's events with the loop time each arrived."""

    def __init__(self, peer: OfferPeer) -> None:
        self.peer = peer
        self.events: list[tuple[float, dict[str, Any]]] = []

    async def until(self, kind: str, timeout: float = 30.0) -> float:
        """Read events until one of type ``kind`` arrives; its arrival time."""
        loop = asyncio.get_running_loop()

        async def read() -> float:
            while True:
                event = await self.peer.events.get()
                now = loop.time()
                self.events.append((now, event))
                if event["type"] == kind:
                    return now
        return await asyncio.wait_for(read(), timeout)

    def drain(self) -> None:
        now = asyncio.get_running_loop().time()
        while not self.peer.events.empty():
            self.events.append((now, self.peer.events.get_nowait()))

    def kinds(self, since: float = 0.0) -> list[str]:
        return [e["type"] for t, e in self.events if t >= since]

    def said(self, kind: str, since: float) -> str:
        return "".join(e["delta"] for t, e in self.events if t >= since and e["type"] == kind)


@needs_speech
async def test_live_wake_policy_pauses_and_wakes_a_webrtc_session(
        relay_factory: RelayFactory, speech: bytes) -> None:
    server = await relay_factory(local_mode="assistant")
    loop = asyncio.get_running_loop()
    async with sdk(server) as client, OfferPeer() as peer:
        loud = Loudness(peer)
        created = await client.live.create(
            session=SESSION,  # type: ignore[arg-type]
            transport={"type": "webrtc", "sdp": await peer.offer()})
        session_id = created.session.id
        await peer.accept(created.transport.sdp)
        timeline = Timeline(peer)
        await timeline.until("session.started")
        started = timeline.events[0][1]
        assert started["session"]["wake_policy"] == {"type": "speech", "vad_threshold": 0.5}
        assert started["session"]["idle_timeout_s"] == IDLE_TIMEOUT_S

        # Silence (the peer's microphone streams it): nothing goes upstream, no reply.
        await asyncio.sleep(2.5)
        timeline.drain()
        assert timeline.kinds() == ["session.started"]
        assert await audio_up(server, session_id) == 0.0
        assert loud.peak < 300

        # Speech wakes it: session.resumed, then the model hears it all and answers.
        mic = peer.pc.getSenders()[0].track
        spoke_at = loop.time()
        mic.play(speech)
        await timeline.until("session.output_transcript.delta", timeout=60)
        kinds = timeline.kinds(spoke_at)
        assert kinds.index("session.resumed") < kinds.index("session.input_transcript.delta")
        heard = timeline.said("session.input_transcript.delta", spoke_at)
        assert len(words(heard)) >= 2, heard  # (the pre-roll's own proof is below)

        # Quiet longer than the timeout after the reply: paused, and no audio goes up.
        paused_at = await timeline.until("session.paused", timeout=60)
        last_output = max(t for t, e in timeline.events
                          if e["type"] == "session.output_transcript.delta")
        # Not while the reply plays (its words arrive as its audio plays): the timeout
        # runs from its end. (The margin is for a busy machine's data-channel delivery.)
        assert paused_at - last_output >= IDLE_TIMEOUT_S - 0.5
        assert loud.peak > 1000, "no audible reply on the track"
        up = await audio_up(server, session_id)
        assert up > 0
        await asyncio.sleep(1.5)
        assert await audio_up(server, session_id) == up
        timeline.drain()
        assert timeline.kinds(paused_at)[-1] == "session.paused"

        # Speech again: resumed, and another reply.
        spoke_again_at = loop.time()
        mic.play(speech)
        await timeline.until("session.output_transcript.delta", timeout=60)
        kinds = timeline.kinds(spoke_again_at)
        assert kinds.index("session.resumed") < kinds.index("session.input_transcript.delta")
        assert await audio_up(server, session_id) > up

        await client.live.sessions.hangup(session_id)
        await timeline.until("session.closed", timeout=10)
        await loud.close()
    closed = timeline.events[-1][1]
    usage = closed["usage"]
    assert usage["active_seconds"] + usage["paused_seconds"] == usage["seconds"]
    # Asleep for 2.5 s before the first wake and 1.5 s after the pause, at least.
    assert usage["paused_seconds"] >= 3 and usage["active_seconds"] >= 2, usage
    for _, event in timeline.events:
        if event["type"] in ("session.resumed", "session.paused"):
            CONNECT_EVENT.validate_python(event)  # WebRTC's own events
        else:
            SERVER_EVENT.validate_python(event)
    assert timeline.kinds().count("session.resumed") == 2
    assert timeline.kinds().count("session.paused") == 1


async def test_live_wake_sends_the_upstream_nothing_asleep_and_the_preroll_on_waking(
        relay_factory: RelayFactory, speech: bytes) -> None:
    """The upstream's side, as a hosted Live WebSocket would see it: no audio at all while
    the session sleeps; on the wake, audio that starts before the speech did (the
    pre-roll: quiet, then the first syllable), so the model misses nothing; nothing again
    once the idle timeout paused it. Its ``session.usage.updated`` reaches the client with
    the active and paused breakdown."""
    appended: list[bytes] = []
    upstream: dict[str, ServerConnection] = {}

    async def hosted(ws: ServerConnection) -> None:
        upstream["ws"] = ws
        async for message in ws:
            event = json.loads(message)
            assert "wake_policy" not in event.get("session", {})  # the relay's to keep
            assert "idle_timeout_s" not in event.get("session", {})
            if event["type"] == "session.start":
                await ws.send(json.dumps({"type": "session.started", "event_id": "event_1",
                                          "session": {"id": "live_hosted", "expires_at": 1,
                                                      "status": "active",
                                                      **event["session"]}}))
            elif event["type"] == "session.input_audio.append":
                appended.append(base64.b64decode(event["audio"]))

    session = dict(SESSION, idle_timeout_s=1)
    async with serve(hosted, "127.0.0.1", 0) as listening:
        port = next(iter(listening.sockets)).getsockname()[1]
        server = await relay_factory(api_key="sk-operator-key-0123456789",
                                     upstream_url=f"ws://127.0.0.1:{port}/v1/realtime")
        async with sdk(server) as client, OfferPeer() as peer:
            created = await client.live.create(
                session=session,  # type: ignore[arg-type]
                transport={"type": "webrtc", "sdp": await peer.offer()})
            await peer.accept(created.transport.sdp)
            timeline = Timeline(peer)
            await timeline.until("session.started")
            await asyncio.sleep(2.0)
            assert appended == []  # asleep: the microphone's silence stays at the relay

            async with client.live.sideband.connect(session_id=created.session.id) as band:
                heard: list[dict[str, Any]] = []

                async def listen() -> None:
                    paused = False
                    async for event in band:
                        heard.append(event.to_dict())
                        if paused and event.type == "session.input_audio.append":
                            return  # the microphone, reflected while paused
                        paused = paused or event.type == "session.paused"
                listening_band = asyncio.ensure_future(listen())
                peer.pc.getSenders()[0].track.play(speech)
                await timeline.until("session.resumed", timeout=10)
                await timeline.until("session.paused", timeout=15)
                await asyncio.wait_for(listening_band, 10)
            # The sideband heard both, and the microphone throughout (asleep too).
            kinds = [e["type"] for e in heard]
            assert kinds.index("session.resumed") < kinds.index("session.paused")
            assert kinds[-1] == "session.input_audio.append"
            for event in heard:
                CONNECT_EVENT.validate_python(event)
            up = await audio_up(server, created.session.id)
            await asyncio.sleep(1.5)
            # Paused: the relay sent nothing more, and the upstream got just what it sent.
            assert await audio_up(server, created.session.id) == up
            assert abs(sum(map(len, appended)) / 48000 - up) < 0.002

            await upstream["ws"].send(json.dumps({
                "type": "session.usage.updated", "event_id": "event_2",
                "usage": {"seconds": 2}}))
            await timeline.until("session.usage.updated", timeout=10)
            await client.live.sessions.hangup(created.session.id)

    audio = np.frombuffer(b"".join(appended), dtype="<i2").astype(np.float64)
    windows = audio[: len(audio) // 240 * 240].reshape(-1, 240)  # 10 ms each
    dbfs = 20 * np.log10(np.sqrt((windows ** 2).mean(axis=1)) / 32768 + 1e-9)
    onset = int(np.argmax(dbfs > -45))
    # Quiet lead-in from the pre-roll (at least 200 ms of it), then the speech.
    assert onset >= 20, onset
    assert dbfs[:onset].max() < -45
    assert len(audio) / 24000 >= len(speech) / 48000  # the whole utterance went up
    usage = timeline.events[-1][1]
    CONNECT_EVENT.validate_python(usage)
    assert usage["usage"]["active_seconds"] + usage["usage"]["paused_seconds"] \
        == usage["usage"]["seconds"] >= 4
    assert usage["usage"]["paused_seconds"] >= 3
