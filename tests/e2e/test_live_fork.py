"""GPT-Live fork of a stored session, with the official ``openai`` package (base URL only)
against the embedded upstream: a session created with ``"store": true`` hears a spoken
turn and is hung up; ``client.live.sessions.fork`` then starts a new WebRTC session whose
first event is ``session.started``, whose upstream ``session.start`` carried the stored
turn's words in ``input`` (the embedded server's own view: the session it started), and
which hears and answers a new turn. What cannot be forked is refused in the API's JSON
error shape. Every event a client gets validates against ``openai.types.live``."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import aiohttp
import openai
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.live import ForkServerEvent, SessionForkResponse
from websockets.exceptions import InvalidStatus

from ..conftest import RelayFactory, base_url
from ..support.offer import OfferPeer
from ..support.speech import needs_speech
from .test_live_resume import TOKEN_HEADER, a_turn
from .test_live_sdk import SERVER_EVENT, SESSION

SERVER_KEY = "sk-server-fork"
FORK_SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ForkServerEvent)


def server_client(server: TestServer, key: str = SERVER_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{base_url(server)}/v1", api_key=key)


async def stored_session(client: AsyncOpenAI, peer: OfferPeer,
                         session: dict[str, Any] | None = None) -> str:
    """Create a stored Live session on ``peer``; its id, once ``session.started`` came."""
    created = await client.live.create(
        session=session or {**SESSION, "store": True},
        transport={"type": "webrtc", "sdp": await peer.offer()})
    await peer.accept(created.transport.sdp)
    first = await peer.next_event()
    assert first["type"] == "session.started", first
    return created.session.id


async def until_recorded(client: AsyncOpenAI, session_id: str) -> bytes:
    """The session's recording, once the relay has finished writing it."""
    for _ in range(100):
        try:
            return (await client.live.sessions.download_recording(session_id)).content
        except openai.ConflictError:  # still being written
            await asyncio.sleep(0.1)
    raise AssertionError("the recording was never ready")


def upstream_starts(archive: bytes) -> list[dict[str, Any]]:
    """The ``session.start`` events a recording says the relay sent upstream."""
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        lines = files.read("events.jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines]
    return [r["event"] for r in records
            if r["dir"] == "relay_to_upstream" and r["event"]["type"] == "session.start"]


@needs_speech
async def test_live_fork_carries_the_stored_conversation_onto_a_new_session(
        relay_factory: RelayFactory, speech: bytes, tmp_path: Any) -> None:
    server = await relay_factory(local_mode="assistant", record_dir=str(tmp_path),
                                 relay_api_keys=(SERVER_KEY,))
    client = server_client(server)
    try:
        # The stored session: one spoken turn, answered, then hung up.
        async with OfferPeer() as peer:
            stored_id = await stored_session(client, peer)
            seen: list[dict[str, Any]] = []
            await a_turn(peer, speech, seen)
            await asyncio.sleep(1.0)  # the reply's words go on while its audio plays
            while not peer.events.empty():
                seen.append(peer.events.get_nowait())
            await client.live.sessions.hangup(stored_id)
        said = " ".join("".join(e["delta"] for e in seen
                                if e["type"] == "session.input_transcript.delta").split())
        replied = "".join(e["delta"] for e in seen
                          if e["type"] == "session.output_transcript.delta").strip()
        assert said and replied.startswith("You said"), seen
        await until_recorded(client, stored_id)

        # The fork, with an override (it is not stored in turn).
        async with OfferPeer() as peer:
            raw = await client.live.sessions.with_raw_response.fork(
                stored_id, transport={"type": "webrtc", "sdp": await peer.offer()},
                session={"store": False})
            forked = raw.parse()
            assert isinstance(forked, SessionForkResponse)
            fork_id = forked.session.id
            assert fork_id != stored_id
            token = (forked.model_extra or {}).get("resume_token")
            assert isinstance(token, str) and raw.headers[TOKEN_HEADER] == token
            await peer.accept(forked.transport.sdp)
            first = await peer.next_event()
            assert first["type"] == "session.started", first
            session = first["session"]
            assert session["id"] == fork_id
            assert session["instructions"] == SESSION["instructions"]  # inherited
            assert session["store"] is False  # overridden
            # What the embedded upstream started: the stored turn's words as input.
            texts = [(m["role"], m["content"][0]["text"]) for m in session["input"]]
            assert texts[0][0] == "user" and " ".join(texts[0][1].split()) == said, texts
            assert texts[1][0] == "assistant" and texts[1][1].startswith("You said"), texts
            fork_seen = [first]
            await a_turn(peer, speech, fork_seen)  # a new turn, heard and answered
            assert any(e["type"] == "session.input_transcript.delta" for e in fork_seen)
            assert all(e.get("code") != "recording_started" for e in fork_seen)
            await client.live.sessions.hangup(fork_id)
        for event in seen + fork_seen:
            SERVER_EVENT.validate_python(event)
        # Not stored: nothing to download, nothing to fork.
        with pytest.raises(openai.NotFoundError):
            await client.live.sessions.download_recording(fork_id)
        with pytest.raises(openai.NotFoundError) as missing:
            await client.live.sessions.fork(
                fork_id, transport={"type": "webrtc", "sdp": "v=0\r\n"})
        assert missing.value.code == "session_not_found"
    finally:
        await client.close()


async def test_live_fork_of_a_fork_is_stored_and_sends_the_conversation_upstream(
        relay_factory: RelayFactory, tmp_path: Any) -> None:
    """Without speech: context the stored session took (``session.instructions.append``)
    is its conversation; the fork inherits ``store``, so its own recording shows the
    ``session.start`` the relay sent upstream, with that context in ``input``, and the
    fork can be forked in turn."""
    server = await relay_factory(record_dir=str(tmp_path), relay_api_keys=(SERVER_KEY,))
    client = server_client(server)
    try:
        async with OfferPeer() as peer:
            stored_id = await stored_session(client, peer, {
                **SESSION, "store": True, "delegation": {"type": "client"},
                "input": [{"type": "message", "role": "developer",
                           "content": [{"type": "input_text", "text": "Be brief."}]}]})
            peer.channel.send(json.dumps({"type": "session.instructions.append",
                                          "event_id": "ctx_1",
                                          "content": "The code word is pineapple."}))
            appended = await peer.next_event()
            while appended["type"] != "session.instructions.appended":
                appended = await peer.next_event()
            await client.live.sessions.hangup(stored_id)
        await until_recorded(client, stored_id)
        async with OfferPeer() as peer:
            forked = await client.live.sessions.fork(
                stored_id, transport={"type": "webrtc", "sdp": await peer.offer()})
            await peer.accept(forked.transport.sdp)
            first = await peer.next_event()
            SERVER_EVENT.validate_python(first)
            assert first["type"] == "session.started"
            await client.live.sessions.hangup(forked.session.id)
        start, = upstream_starts(await until_recorded(client, forked.session.id))
        assert start["session"]["input"] == [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "Be brief."}]},
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "The code word is pineapple."}]}]
        assert start["session"]["store"] is True
        assert start["session"]["instructions"] == SESSION["instructions"]
        # A fork of the fork: its input is the fork's, once (not doubled).
        async with OfferPeer() as peer:
            again = await client.live.sessions.fork(
                forked.session.id, transport={"type": "webrtc", "sdp": await peer.offer()})
            await peer.accept(again.transport.sdp)
            first = await peer.next_event()
            assert first["session"]["input"] == start["session"]["input"]
            await client.live.sessions.hangup(again.session.id)
    finally:
        await client.close()


async def test_live_fork_refuses_what_cannot_be_forked(
        relay_factory: RelayFactory, tmp_path: Any) -> None:
    """Unknown (or a Realtime call): 404 ``session_not_found``; live: 409
    ``session_in_progress``; recorded but not stored: 400 ``session_not_stored``; an
    override a fork cannot have (new
    instructions): 400 ``unknown_parameter``; a client secret: 401 (the fork reads the
    stored conversation, which only a server key may download)."""
    server = await relay_factory(record="all", record_dir=str(tmp_path),
                                 relay_api_keys=(SERVER_KEY,))
    client = server_client(server)
    offer = {"type": "webrtc", "sdp": "v=0\r\n"}
    try:
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.live.sessions.fork("live_nobody", transport=offer)
        assert unknown.value.code == "session_not_found"

        async with OfferPeer() as peer:
            stored_id = await stored_session(client, peer)
            with pytest.raises(openai.ConflictError) as live:
                await client.live.sessions.fork(stored_id, transport=offer)
            assert live.value.code == "session_in_progress"
            await client.live.sessions.hangup(stored_id)
        async with OfferPeer() as peer:
            plain_id = await stored_session(client, peer, SESSION)  # recorded, not stored
            with pytest.raises(openai.BadRequestError) as plain_live:
                await client.live.sessions.fork(plain_id, transport=offer)
            assert plain_live.value.code == "session_not_stored"
            await client.live.sessions.hangup(plain_id)
        await until_recorded(client, stored_id)
        await until_recorded(client, plain_id)
        with pytest.raises(openai.BadRequestError) as plain:
            await client.live.sessions.fork(plain_id, transport=offer)
        assert plain.value.code == "session_not_stored"

        async with OfferPeer() as peer:
            with pytest.raises(openai.BadRequestError) as override:
                await client.live.sessions.fork(
                    stored_id, transport={"type": "webrtc", "sdp": await peer.offer()},
                    session={"instructions": "Be a pirate."})
        assert override.value.code == "unknown_parameter"
        assert override.value.param == "session.instructions"

        # A Realtime call, live or recorded, is no Live session to fork.
        auth = {"Authorization": f"Bearer {SERVER_KEY}"}
        async with OfferPeer() as peer, aiohttp.ClientSession() as http:
            async with http.post(f"{base_url(server)}/v1/realtime/calls",
                                 data=await peer.offer(),
                                 headers={**auth, "Content-Type": "application/sdp"}) as made:
                assert made.status == 201
                call_id = made.headers["Location"].rsplit("/", 1)[-1]
                await peer.accept(await made.text())
            with pytest.raises(openai.NotFoundError) as realtime_live:
                await client.live.sessions.fork(call_id, transport=offer)
            assert realtime_live.value.code == "session_not_found"
            async with http.post(f"{base_url(server)}/v1/realtime/calls/{call_id}/hangup",
                                 headers=auth) as hung:
                assert hung.status == 200
            for _ in range(100):
                async with http.get(f"{base_url(server)}/v1/realtime/calls/{call_id}/content",
                                    headers=auth) as content:
                    if content.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert content.status == 200
        with pytest.raises(openai.NotFoundError) as realtime:
            await client.live.sessions.fork(call_id, transport=offer)
        assert realtime.value.code == "session_not_found"

        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base_url(server)}/v1/live/client_secrets",
                                 json={"session": {**SESSION, "store": True}},
                                 headers={"Authorization": f"Bearer {SERVER_KEY}"}) as minted:
                secret = (await minted.json())["value"]
            async with http.post(f"{base_url(server)}/v1/live/sessions/{stored_id}/fork",
                                 json={"transport": offer},
                                 headers={"Authorization": f"Bearer {secret}"}) as response:
                assert response.status == 401
                body = await response.json()
        assert set(body["error"]) == {"message", "type", "code", "param"}
        assert secret not in json.dumps(body)
    finally:
        await client.close()


async def test_live_websocket_fork_starts_from_the_stored_conversation(
        relay_factory: RelayFactory, tmp_path: Any) -> None:
    """``client.live.forks.connect`` (``GET …/fork`` upgraded): ``session.start`` with
    overrides only; one a fork cannot have is an ``error`` naming it (the socket stays
    open), then ``{}`` starts the fork with the stored configuration and conversation
    (the embedded upstream's ``session.started`` shows its ``input``). Every server event
    validates as a ``ForkServerEvent``; a session that cannot be forked is refused before
    the upgrade."""
    server = await relay_factory(record_dir=str(tmp_path), relay_api_keys=(SERVER_KEY,))
    client = server_client(server)
    try:
        async with OfferPeer() as peer:
            stored_id = await stored_session(client, peer, {
                **SESSION, "store": True, "wake_policy": {"type": "speech"}})
            peer.channel.send(json.dumps({"type": "session.thinking.append",
                                          "content": "The user likes tea."}))
            while (await peer.next_event())["type"] != "session.thinking.appended":
                pass
            await client.live.sessions.hangup(stored_id)
        await until_recorded(client, stored_id)
        async with client.live.forks.connect(session_id=stored_id) as connection:
            async def next_event() -> dict[str, Any]:
                raw: dict[str, Any] = json.loads(
                    await asyncio.wait_for(connection.recv_bytes(), 10))
                FORK_SERVER_EVENT.validate_python(raw)
                return raw

            await connection.send({"type": "session.start", "event_id": "s1",
                                   "session": {"instructions": "Be a pirate."}})
            refused = await next_event()
            assert (refused["type"], refused["error"]["code"], refused["error"]["param"],
                    refused["client_event_id"]) == (
                "error", "unknown_parameter", "session.instructions", "s1")
            await connection.session.start(session={}, event_id="s2")
            started = await next_event()
            assert (started["type"], started["client_event_id"]) == ("session.started", "s2")
            session = started["session"]
            assert session["instructions"] == SESSION["instructions"]
            assert "wake_policy" not in session  # a WebRTC-only field
            assert session["input"] == [{"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "The user likes tea."}]}]
            await connection.session.close()
            closed = await next_event()
            assert closed["type"] == "session.closed"
        with pytest.raises(InvalidStatus) as handshake:
            async with client.live.forks.connect(session_id="live_nobody") as connection:
                await connection.recv_bytes()
        assert handshake.value.response.status_code == 404
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base_url(server)}/v1/live/sessions/live_nobody/fork",
                                headers={"Authorization": f"Bearer {SERVER_KEY}"}) as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "session_not_found"
    finally:
        await client.close()
