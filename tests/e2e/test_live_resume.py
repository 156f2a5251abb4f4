"""GPT-Live sessions outlive their transports, as Realtime calls do, over real loopback
sockets: a session whose peer's path died resumes on a new peer connection with the token
its creation gave (the first event there an ``info`` ``call_resumed``, then audio both
ways), a stranger is refused in the API's JSON error shape, and the session survives its
upstream dying (the embedded server as its own process, killed and started again; a
stand-in for the hosted service that drops its socket) with its configuration and its
conversation rebuilt on the new upstream session. Every event a client gets validates
against ``openai.types.live``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from openai.types.live import ClientEvent

from relay.protocol.live.live_core import RESTORED_CODE, RESUMED_CODE
from relay.server.app import REGISTRY

from ..conftest import RelayFactory, base_url, live_calls
from ..support.offer import OfferPeer
from ..support.processes import stop
from ..support.speech import needs_speech
from .test_live_sdk import SERVER_EVENT, SESSION, Loudness, sdk
from .test_resume import go_silent
from .test_upstream_rollover import free_port, start_upstream

TOKEN_HEADER = "X-Relay-Resume-Token"
CLIENT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ClientEvent)
#: Speech, then enough silence for the turn to end.
SILENCE = bytes(48 * 1500)


async def create(server: TestServer, peer: OfferPeer,
                 session: dict[str, Any] | None = None) -> tuple[str, str]:
    """Create a Live session with the official client; its id and resume token (the
    JSON's ``resume_token``, the same as the header's)."""
    async with sdk(server) as client:
        raw = await client.live.with_raw_response.create(
            session=session or SESSION, transport={"type": "webrtc", "sdp": await peer.offer()})
        created = raw.parse()
    token = (created.model_extra or {}).get("resume_token")
    assert isinstance(token, str) and len(token) >= 40
    assert raw.headers[TOKEN_HEADER] == token
    await peer.accept(created.transport.sdp)
    return created.session.id, token


async def resume(server: TestServer, session_id: str, token: str | None,
                 body: Any) -> tuple[int, dict[str, Any]]:
    headers = {TOKEN_HEADER: token} if token is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/live/sessions/{session_id}/resume",
                             json=body, headers=headers) as response:
            return response.status, await response.json()


async def a_turn(peer: OfferPeer, speech: bytes, seen: list[dict[str, Any]],
                 timeout: float = 40.0) -> float:
    """Speak on ``peer``'s microphone until the relay has passed on the user's words and
    then the reply's; the loop time the reply's first words arrived."""
    peer.pc.getSenders()[0].track.play(speech + SILENCE)
    loop = asyncio.get_running_loop()

    async def read() -> float:
        heard = False
        while True:
            event = await peer.events.get()
            seen.append(event)
            heard = heard or event["type"] == "session.input_transcript.delta"
            if heard and event["type"] == "session.output_transcript.delta":
                return loop.time()
    return await asyncio.wait_for(read(), timeout)


async def event_matching(peer: OfferPeer, seen: list[dict[str, Any]], kind: str,
                         code: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        while True:
            event = await peer.events.get()
            seen.append(event)
            if event["type"] == kind and (code is None or event.get("code") == code):
                return event
    return await asyncio.wait_for(read(), timeout)


def loud_after(loud: Loudness, since: float) -> int:
    """The loudest frame the peer decoded after ``since``."""
    return max((peak for at, peak in loud.frames if at >= since), default=0)


@needs_speech
async def test_live_session_resumes_on_a_new_peer_connection_with_its_token(
        relay_factory: RelayFactory, speech: bytes) -> None:
    server = await relay_factory(local_mode="assistant", peer_timeout=0.5, resume_grace=10.0)
    async with OfferPeer() as first, OfferPeer() as second:
        session_id, token = await create(server, first)
        seen = [await first.next_event()]
        assert seen[0]["type"] == "session.started"
        await a_turn(first, speech, seen)
        [call] = list(server.app[REGISTRY])
        go_silent(first.pc)  # the network is gone: no goodbye
        await asyncio.sleep(1.5)  # the relay has found the peer gone, and waits
        assert not call.closing and call.pc.connectionState == "closed"

        loud = Loudness(second)
        status, answer = await resume(server, session_id, token, {
            "transport": {"type": "webrtc", "sdp": await second.offer()}})
        assert status == 201, answer
        assert answer["session"] == {"id": session_id} and "resume_token" not in answer
        await second.accept(answer["transport"]["sdp"])
        after = [await second.next_event()]
        resumed = after[0]  # the first event on the new channel says what happened
        assert resumed["type"] == "info" and resumed["code"] == RESUMED_CODE
        assert resumed["via"] == "new_peer_connection" and resumed["resumes"] == 1
        assert resumed["seconds_without_peer"] >= 1.0

        # The same session on the new path, audio both ways: the relay hears the new
        # peer's microphone (the user's words) and the new peer hears the reply.
        replied_at = await a_turn(second, speech, after)
        await asyncio.sleep(1.0)  # the reply's audio plays out in real time
        assert loud_after(loud, replied_at) > 1000, "no audible reply on the new path"
        await loud.close()
        assert live_calls(server) == 1 and call.stats()["peer_resumes"] == 1
        assert call.stats()["upstream_restores"] == 0
        for event in seen + after:
            SERVER_EVENT.validate_python(event)
        async with sdk(server) as client:
            await client.live.sessions.hangup(session_id)


async def test_live_session_resume_is_refused_to_a_stranger(relay_factory: RelayFactory) -> None:
    server = await relay_factory()
    async with OfferPeer() as peer, OfferPeer() as other:
        session_id, token = await create(server, peer)
        assert (await peer.next_event())["type"] == "session.started"
        offer = {"transport": {"type": "webrtc", "sdp": await other.offer()}}
        status, body = await resume(server, session_id, None, offer)
        assert (status, body["error"]["code"]) == (403, "resume_token_required")
        wrong = ("y" if token.startswith("x") else "x") + token[1:]
        status, body = await resume(server, session_id, wrong, offer)
        assert (status, body["error"]["code"]) == (403, "resume_token_invalid")
        assert token not in json.dumps(body)
        # The right token with no offer, or with a session to change: a 400.
        status, body = await resume(server, session_id, token, {"transport": {"type": "webrtc"}})
        assert (status, body["error"]["param"]) == (400, "transport.sdp")
        status, body = await resume(server, session_id, token, {**offer, "session": SESSION})
        assert (status, body["error"]["param"]) == (400, "session")
        # An offer that cannot be answered: a 400, and the session goes on where it was.
        status, body = await resume(server, session_id, token, {
            "transport": {"type": "webrtc", "sdp": "v=0 nonsense"}})
        assert (status, body["error"]["code"]) == (400, "invalid_offer")
        # An unknown session is a 404, whatever the token.
        status, body = await resume(server, "rtc_u1_nope", token, offer)
        assert (status, body["error"]["code"]) == (404, "session_not_found")
        [call] = list(server.app[REGISTRY])
        assert call.peer_resumes == 0 and not call.closing
        assert call.pc.connectionState == "connected" and peer.channel.readyState == "open"


@needs_speech
@pytest.mark.slow
async def test_live_session_survives_its_upstream_process_killed_and_restarted(
        relay_factory: RelayFactory, speech: bytes) -> None:
    port = free_port()
    upstream = await start_upstream(port)
    try:
        server = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                     upstream_reconnect_seconds=20.0)
        async with OfferPeer() as peer:
            loud = Loudness(peer)
            session_id, _ = await create(server, peer)
            seen = [await peer.next_event()]
            await a_turn(peer, speech, seen)
            [call] = list(server.app[REGISTRY])
            first_upstream = call.core.upstream_session_id  # type: ignore[attr-defined]
            upstream.kill()  # no goodbye: the socket just dies
            upstream.wait()
            await asyncio.sleep(1.0)
            upstream = await start_upstream(port)
            restored = await event_matching(peer, seen, "info", RESTORED_CODE)
            assert restored["reason"].startswith("upstream_closed")
            # The first turn's words (the user's, the reply's) went to the new session.
            assert restored["messages_restored"] >= 2 and restored["messages_dropped"] == 0
            assert call.core.upstream_session_id != first_upstream  # type: ignore[attr-defined]
            # The session goes on, audio both ways, on the new upstream session.
            replied_at = await a_turn(peer, speech, seen)
            await asyncio.sleep(1.0)
            assert loud_after(loud, replied_at) > 1000
            await loud.close()
            assert [e for e in seen if e["type"] in ("error", "session.closed")] == []
            assert sum(e["type"] == "session.started" for e in seen) == 1
            for event in seen:
                SERVER_EVENT.validate_python(event)
            assert call.stats()["upstream_restores"] == 1
            print(f"\nlive upstream killed → restored (down {restored['seconds_without_upstream']}"
                  f" s, uplink dropped {restored['uplink_ms_dropped']} ms)")
            async with sdk(server) as client:
                await client.live.sessions.hangup(session_id)
    finally:
        stop(upstream)


class DroppingUpstream:
    """A stand-in for the hosted primary Live WebSocket: it starts each session, says the
    user's and the model's words, then (the first session only) drops the socket with
    1011; every client event it gets must be a valid ``openai.types.live`` one."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.sessions = 0

    async def __call__(self, ws: Any) -> None:
        self.sessions += 1
        number = self.sessions
        async for message in ws:
            event = json.loads(message)
            CLIENT_EVENT.validate_python(event)
            if event["type"] != "session.start":
                continue
            self.starts.append(event)
            await ws.send(json.dumps({
                "type": "session.started", "event_id": f"event_{number}",
                "client_event_id": event.get("event_id"),
                "session": {"id": f"live_hosted_{number}", "expires_at": 1, "status": "active",
                            **event["session"]}}))
            if number == 1:
                for kind, words in (("session.input_transcript.delta", "the code word "),
                                    ("session.input_transcript.delta", "is pineapple"),
                                    ("session.output_transcript.delta", "Pineapple, noted.")):
                    await ws.send(json.dumps({"type": kind, "event_id": "event_w",
                                              "delta": words, "start_ms": 0, "end_ms": 10}))
                await asyncio.sleep(0.3)
                await ws.close(1011, "internal error")
                return


async def test_live_session_restored_on_the_hosted_upstream_with_its_conversation(
        relay_factory: RelayFactory) -> None:
    from websockets.asyncio.server import serve

    hosted = DroppingUpstream()
    async with serve(hosted, "127.0.0.1", 0) as listening:
        port = next(iter(listening.sockets)).getsockname()[1]
        server = await relay_factory(api_key="sk-operator-key-0123456789",
                                     upstream_url=f"ws://127.0.0.1:{port}/v1/realtime")
        async with OfferPeer() as peer:
            session = {**SESSION, "delegation": {"type": "client"}}
            session_id, _ = await create(server, peer, session)
            seen = [await peer.next_event()]
            restored = await event_matching(peer, seen, "info", RESTORED_CODE)
            assert restored["reason"] == "upstream_closed (1011)"
            assert restored["messages_restored"] == 2 and not restored["history_refused"]
            for event in seen:
                SERVER_EVENT.validate_python(event)
            assert [e["type"] for e in seen] == [
                "session.started", "session.input_transcript.delta",
                "session.input_transcript.delta", "session.output_transcript.delta", "info"]
            assert seen[0]["session"]["id"] == session_id
            async with sdk(server) as client:
                await client.live.sessions.hangup(session_id)
    first, second = hosted.starts
    assert second["session"] == {**first["session"], "input": [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "the code word is pineapple"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Pineapple, noted."}]}]}
    assert second["session"]["instructions"] == SESSION["instructions"]


async def test_live_session_without_reconnecting_ends_with_upstream_closed(
        relay_factory: RelayFactory) -> None:
    from websockets.asyncio.server import serve

    hosted = DroppingUpstream()
    async with serve(hosted, "127.0.0.1", 0) as listening:
        port = next(iter(listening.sockets)).getsockname()[1]
        server = await relay_factory(api_key="sk-operator-key-0123456789",
                                     upstream_url=f"ws://127.0.0.1:{port}/v1/realtime",
                                     upstream_reconnect_seconds=0)
        async with OfferPeer() as peer:
            await create(server, peer)
            seen: list[dict[str, Any]] = []
            error = await event_matching(peer, seen, "error")
            assert error["error"]["code"] == "upstream_closed"
            for event in seen:
                SERVER_EVENT.validate_python(event)
            [call] = list(server.app[REGISTRY])
            for _ in range(100):
                if call.closed:
                    break
                await asyncio.sleep(0.05)
            assert call.closed and call.close_reason == "upstream closed"
    assert hosted.sessions == 1


async def test_live_session_rolls_over_before_the_upstream_limit(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(upstream_session_seconds=2.0)
    async with OfferPeer() as peer:
        session_id, _ = await create(server, peer)
        seen = [await peer.next_event()]
        restored = await event_matching(peer, seen, "info", RESTORED_CODE, timeout=20)
        assert restored["reason"] == "session_rollover"
        assert restored["uplink_ms_dropped"] == 0  # the new session was open before the switch
        [call] = list(server.app[REGISTRY])
        assert call.stats()["upstream_restores"] >= 1 and not call.closing
        for event in seen:
            SERVER_EVENT.validate_python(event)
        assert [e["type"] for e in seen] == ["session.started", "info"]
        async with sdk(server) as client:
            await client.live.sessions.hangup(session_id)
