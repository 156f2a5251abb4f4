"""GPT-Live through the relay, with the official ``openai`` package (base URL only) as the
client: ``client.live.create`` parses the relay's answer, an aiortc peer connects with it,
a spoken turn is heard and answered, a sideband attaches with
``client.live.sideband.connect`` and hears a later turn, and ``client.live.sessions.hangup``
ends the session (a second hangup is a ``NotFoundError``). Every data-channel and sideband
event validates against ``openai.types.live``'s server-event models.

The upstream is the embedded server's GPT-Live face: in process, and as its own process
(``relay upstream``), so the Live WebSocket path is the one production uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import openai
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from openai import AsyncOpenAI
from openai.types.live import LiveCreateResponse, ServerEvent
from openai.types.live.connect_server_event import ConnectServerEvent

from ..conftest import RelayFactory, base_url
from ..support.offer import OfferPeer
from ..support.processes import stop
from ..support.speech import needs_speech
from .test_cli import free_port, start

SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
SIDEBAND_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ConnectServerEvent)
SESSION = {"model": "gpt-live-1", "instructions": "Answer like a lighthouse keeper.",
           "audio": {"output": {"voice": "marin"}}}


class Loudness:
    """The loudest sample the peer has received on the relay's audio track, and each
    frame's peak with the time it was decoded."""

    def __init__(self, peer: OfferPeer) -> None:
        self.peak = 0
        self.frames: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        peer.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16)
                peak = int(np.abs(samples.astype(np.int32)).max())
                self.frames.append((asyncio.get_running_loop().time(), peak))
                self.peak = max(self.peak, peak)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def sdk(server: TestServer) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-test")
    try:
        yield client
    finally:
        await client.close()


async def until(events: asyncio.Queue[dict[str, Any]], kinds: set[str],
                seen: list[dict[str, Any]], timeout: float = 30.0) -> None:
    """Read ``events`` into ``seen`` until one of each of ``kinds`` has arrived."""
    async def read() -> None:
        missing = set(kinds)
        while missing:
            event = await events.get()
            seen.append(event)
            missing.discard(event["type"])
    await asyncio.wait_for(read(), timeout)


async def hold_a_session(server: TestServer, speech: bytes) -> None:
    """The whole proof, against ``server``."""
    async with sdk(server) as client, OfferPeer() as peer:
        loud = Loudness(peer)
        created = await client.live.create(
            session=SESSION, transport={"type": "webrtc", "sdp": await peer.offer()})
        assert isinstance(created, LiveCreateResponse)
        session_id = created.session.id
        await peer.accept(created.transport.sdp)

        first = await peer.next_event()
        assert first["type"] == "session.started"
        assert first["session"]["id"] == session_id
        assert first["session"]["instructions"] == SESSION["instructions"]
        assert "format" not in first["session"]["audio"]  # WebRTC negotiated its own

        mic = peer.pc.getSenders()[0].track
        mic.play(speech + bytes(48 * 1500))
        seen: list[dict[str, Any]] = [first]
        await until(peer.events, {"session.input_transcript.delta",
                                  "session.output_transcript.delta"}, seen)
        await asyncio.sleep(1.0)  # the reply's audio plays out in real time
        said = "".join(e["delta"] for e in seen
                       if e["type"] == "session.input_transcript.delta")
        assert said.strip(), seen
        assert all(e["type"] != "session.output_audio.delta" for e in seen)
        assert loud.peak > 1000, "no audible reply on the track"

        async with client.live.sideband.connect(session_id=session_id) as sideband:
            heard: list[dict[str, Any]] = []
            mic.play(speech + bytes(48 * 1500))

            async def listen() -> None:
                kinds: set[str] = set()
                async for event in sideband:
                    raw = event.to_dict()
                    heard.append(raw)
                    kinds.add(raw["type"])
                    if {"session.input_transcript.delta", "session.output_transcript.delta",
                        "session.output_audio.delta", "session.input_audio.append"} <= kinds:
                        return
            await asyncio.wait_for(listen(), 30)

            # A hangup ends the session with session.closed, for the sideband too.
            await client.live.sessions.hangup(session_id)

            async def until_closed() -> None:
                async for event in sideband:
                    heard.append(event.to_dict())
                    if event.type == "session.closed":
                        return
            await asyncio.wait_for(until_closed(), 10)
        for event in heard:
            SIDEBAND_EVENT.validate_python(event)
        reflected = [e for e in heard if e["type"] == "session.output_audio.delta"]
        assert all(e["end_ms"] > e["start_ms"] >= 0 for e in reflected)
        closed = heard[-1]
        assert closed["reason"] == "close_requested" and closed["session"]["id"] == session_id

        with pytest.raises(openai.NotFoundError):
            await client.live.sessions.hangup(session_id)
        await loud.close()
        while not peer.events.empty():
            seen.append(peer.events.get_nowait())
        for event in seen:
            SERVER_EVENT.validate_python(event)
        assert seen[-1]["type"] == "session.closed"


@needs_speech
async def test_live_sdk_holds_a_session_on_the_embedded_upstream(
        relay_factory: RelayFactory, speech: bytes) -> None:
    server = await relay_factory(local_mode="assistant")
    await hold_a_session(server, speech)


@needs_speech
async def test_live_sdk_holds_a_session_on_relay_upstream_as_its_own_process(
        relay_factory: RelayFactory, speech: bytes) -> None:
    port = free_port()
    process = start("upstream", "--port", str(port), "--mode", "assistant")
    try:
        await wait_for_port(port)
        server = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime")
        await hold_a_session(server, speech)
    finally:
        stop(process)


async def wait_for_port(port: int, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert loop.time() < deadline, "relay upstream did not come up"
            await asyncio.sleep(0.1)


async def test_live_upstream_gets_session_start_with_the_operator_key_and_the_microphone(
        relay_factory: RelayFactory) -> None:
    """The primary WebSocket as the hosted service sees it: the Live path with no query,
    the operator's key, ``session.start`` first (a valid ``ClientEvent``, PCM16 24 kHz),
    then the microphone as ``session.input_audio.append``."""
    from openai.types.live import ClientEvent
    from websockets.asyncio.server import ServerConnection, serve

    client_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ClientEvent)
    seen: dict[str, Any] = {"messages": []}
    enough = asyncio.Event()

    async def hosted(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["path"], seen["auth"] = ws.request.path, ws.request.headers.get("Authorization")
        async for message in ws:
            event = json.loads(message)
            client_event.validate_python(event)
            seen["messages"].append(event)
            if event["type"] == "session.start":
                await ws.send(json.dumps({"type": "session.started", "event_id": "event_1",
                                          "session": {"id": "live_hosted", "expires_at": 1,
                                                      "model": "gpt-live-1",
                                                      "status": "active",
                                                      **event["session"]}}))
            if len(seen["messages"]) > 20:
                enough.set()

    async with serve(hosted, "127.0.0.1", 0) as upstream:
        port = next(iter(upstream.sockets)).getsockname()[1]
        server = await relay_factory(api_key="sk-operator-key-0123456789",
                                     upstream_url=f"ws://127.0.0.1:{port}/v1/realtime")
        async with sdk(server) as client, OfferPeer() as peer:
            created = await client.live.create(
                session=SESSION, transport={"type": "webrtc", "sdp": await peer.offer()})
            await peer.accept(created.transport.sdp)
            first = await peer.next_event()
            SERVER_EVENT.validate_python(first)
            assert first["session"]["id"] == created.session.id  # the relay's, not live_hosted
            await asyncio.wait_for(enough.wait(), 10)
            await client.live.sessions.hangup(created.session.id)
    assert seen["path"] == "/v1/live/sessions"
    assert seen["auth"] == "Bearer sk-operator-key-0123456789"
    start, *rest = seen["messages"]
    assert start == {"type": "session.start", "session": {
        **SESSION, "audio": {"output": {"voice": "marin"},
                             "format": {"type": "audio/pcm", "rate": 24000}}}}
    assert {e["type"] for e in rest} == {"session.input_audio.append"}


@needs_speech
async def test_live_talking_over_the_reply_cuts_it_and_its_transcript(
        relay_factory: RelayFactory, speech: bytes) -> None:
    """GPT-Live's interruption is the model's: the embedded model stops speaking when the
    user talks over it, the relay passes that on as it is, and the reply's transcript
    covers only what was played before the cut."""
    server = await relay_factory(local_mode="assistant")
    async with sdk(server) as client, OfferPeer() as peer:
        loud = Loudness(peer)
        created = await client.live.create(
            session=SESSION, transport={"type": "webrtc", "sdp": await peer.offer()})
        await peer.accept(created.transport.sdp)
        seen = [await peer.next_event()]
        mic = peer.pc.getSenders()[0].track
        mic.play(speech)  # then silence: the microphone pads with it, and the turn ends
        await until(peer.events, {"session.output_transcript.delta"}, seen)
        mic.play(speech + bytes(48 * 1500))  # talk over the reply at once
        loop = asyncio.get_running_loop()
        talked_over_at = loop.time()
        arrivals: list[tuple[float, dict[str, Any]]] = []

        async def second_reply() -> None:
            inputs = 0
            while True:
                event = await peer.events.get()
                arrivals.append((loop.time(), event))
                inputs += event["type"] == "session.input_transcript.delta"
                if inputs and event["type"] == "session.output_transcript.delta":
                    return
        await asyncio.wait_for(second_reply(), 30)
        for event in seen + [event for _, event in arrivals]:
            SERVER_EVENT.validate_python(event)
        # The first reply is the output before the second turn's words.
        second_turn = next(i for i, (_, e) in enumerate(arrivals)
                           if e["type"] == "session.input_transcript.delta")
        first_reply = [(t, e) for t, e in arrivals[:second_turn]
                       if e["type"] == "session.output_transcript.delta"]
        said = "".join(e["delta"] for e in seen
                       if e["type"] == "session.output_transcript.delta")
        said += "".join(e["delta"] for _, e in first_reply)
        heard = "".join(e["delta"] for e in seen
                        if e["type"] == "session.input_transcript.delta")
        full = f"You said: {' '.join(heard.split())}"
        assert full.startswith(said) and len(said) < len(full), (said, full)
        # Cut within the detector's onset and one delta of lead, not at the reply's end.
        last_word_at = max((t for t, _ in first_reply), default=talked_over_at)
        assert last_word_at - talked_over_at < 1.0
        # And the track went quiet: while the user talked (the reply, uncut, would have
        # gone on for seconds), until the second reply.
        second_reply_at = next(t for t, e in arrivals[second_turn:]
                               if e["type"] == "session.output_transcript.delta")
        quiet = [peak for t, peak in loud.frames
                 if talked_over_at + 1.0 < t < second_reply_at - 0.2]
        assert len(quiet) > 25 and max(quiet) < 300, quiet
        await loud.close()
        await client.live.sessions.hangup(created.session.id)


async def test_live_recorded_session_hears_so_in_an_info_event(
        relay_factory: RelayFactory, tmp_path: Any) -> None:
    """A recorded GPT-Live session is told so right after ``session.started``, in the
    ``info`` event the official types know (code ``recording_started``), with where the
    operator downloads it."""
    server = await relay_factory(record="all", record_dir=str(tmp_path))
    async with sdk(server) as client, OfferPeer() as peer:
        created = await client.live.create(
            session=SESSION, transport={"type": "webrtc", "sdp": await peer.offer()})
        assert isinstance(created, LiveCreateResponse)
        await peer.accept(created.transport.sdp)
        first, second = await peer.next_event(), await peer.next_event()
        for event in (first, second):
            SERVER_EVENT.validate_python(event)
        assert first["type"] == "session.started"
        assert (second["type"], second["code"]) == ("info", "recording_started"), second
        session_id = created.session.id
        assert second["recording"]["content_url"] == f"/v1/live/sessions/{session_id}/content"
        await client.live.sessions.hangup(session_id)


async def test_live_stored_session_is_recorded_and_its_content_downloads(
        relay_factory: RelayFactory, tmp_path: Any) -> None:
    """``"store": true`` (a server key's) is kept as a recording: the official client's
    ``live.sessions.content`` downloads it once the session has ended. A client secret's
    holder may not ask for it unless the key was minted with it."""
    server = await relay_factory(record_dir=str(tmp_path), relay_api_keys=("sk-server",))
    client = AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key="sk-server")
    try:
        async with OfferPeer() as peer:
            created = await client.live.create(
                session={**SESSION, "store": True},
                transport={"type": "webrtc", "sdp": await peer.offer()})
            await peer.accept(created.transport.sdp)
            await peer.next_event()  # session.started
            notice = await peer.next_event()
            assert (notice["type"], notice["code"]) == ("info", "recording_started")
            session_id = created.session.id
            await client.live.sessions.hangup(session_id)
        content = None
        for _ in range(100):
            try:
                content = await client.live.sessions.download_recording(session_id)
                break
            except openai.ConflictError:  # 409 recording_in_progress: still being written
                await asyncio.sleep(0.1)
        assert content is not None
        with zipfile.ZipFile(io.BytesIO(content.content)) as archive:
            assert {"audio.ogg", "events.jsonl", "metadata.json"} <= set(archive.namelist())
        async with aiohttp.ClientSession() as http, http.post(
                f"{base_url(server)}/v1/live/client_secrets", json={"session": SESSION},
                headers={"Authorization": "Bearer sk-server"}) as response:
            assert response.status == 200, await response.text()
            minted = (await response.json())["value"]
        async with OfferPeer() as peer:
            browser = AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key=minted)
            try:
                with pytest.raises(openai.BadRequestError) as refused:
                    await browser.live.create(
                        session={**SESSION, "store": True},
                        transport={"type": "webrtc", "sdp": await peer.offer()})
            finally:
                await browser.close()
        assert refused.value.code == "invalid_value"
        assert refused.value.param == "session.store"  # type: ignore[attr-defined]
    finally:
        await client.close()
