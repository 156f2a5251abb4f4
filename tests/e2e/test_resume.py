"""A call resumed on a new peer connection with its resume token, over real loopback
sockets: the conversation and the upstream session go on, the client hears of it first on
its new channel, a stranger is refused, and a peer that never comes back ends the call
after the grace period."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from relay.client import CallClient
from relay.protocol.call_protocol import RESUMED_EVENT
from relay.server.app import REGISTRY
from relay.webrtc.internals import ice_gatherers

from ..conftest import RelayFactory, base_url, live_calls
from .test_upstream_rollover import CODE_WORD, refer_back, say_and_hear

OFFER_HEADERS = {"Content-Type": "application/sdp"}


async def test_call_resumes_on_a_new_peer_connection_with_its_token(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server: TestServer = await relay_factory(local_mode="assistant")
    client = make_client(server=server)
    await client.connect()
    assert client.resume_token and len(client.resume_token) >= 40
    item_id, heard = await say_and_hear(client, CODE_WORD)
    assert CODE_WORD in heard
    [call] = list(server.app[REGISTRY])
    first_pc = call.pc
    mark = len(client.events)
    await client.resume()
    # The first event on the new channel says what happened.
    resumed = await client.wait_for(RESUMED_EVENT, after=mark)
    assert client.events[mark][1]["type"] == RESUMED_EVENT
    assert resumed["via"] == "new_peer_connection" and resumed["resumes"] == 1
    assert call.pc is not first_pc and first_pc.connectionState == "closed"
    # Same call, same upstream session, same conversation.
    assert CODE_WORD in await refer_back(client, item_id)
    assert live_calls(server) == 1 and call.stats()["upstream_restores"] == 0
    assert call.stats()["peer_resumes"] == 1
    assert await client.hangup() == 200


async def test_call_resume_is_refused_to_a_stranger(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server = await relay_factory()
    client = make_client(server=server)
    await client.connect()
    url = f"{base_url(server)}/v1/realtime/calls/{client.call_id}/resume"
    offer = client.pc.localDescription.sdp
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=offer, headers=OFFER_HEADERS) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "resume_token_required"
        token = client.resume_token
        assert token is not None
        # One character changed, to one it surely is not (one in 64 tokens starts with x).
        forged = ("y" if token.startswith("x") else "x") + token[1:]
        assert forged != token
        wrong = {**OFFER_HEADERS, "X-Relay-Resume-Token": forged}
        async with http.post(url, data=offer, headers=wrong) as response:
            assert response.status == 403
            body = await response.json()
            assert body["error"]["code"] == "resume_token_invalid"
            assert client.resume_token not in await response.text()  # type: ignore[operator]
        # The right token with an offer that is not SDP: a 400, and the call goes on.
        right = {**OFFER_HEADERS, "X-Relay-Resume-Token": client.resume_token or ""}
        async with http.post(url, data="v=0 nonsense", headers=right) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "invalid_offer"
        # Another call's token opens nothing either; an unknown call is a 404.
        other = f"{base_url(server)}/v1/realtime/calls/rtc_u1_nope/resume"
        async with http.post(other, data=offer, headers=right) as response:
            assert response.status == 404
    [call] = list(server.app[REGISTRY])
    assert call.peer_resumes == 0 and not call.closing
    # The call never noticed.
    mark = len(client.events)
    client.say("still here")
    await client.wait_for("response.done", after=mark)


def go_silent(pc: RTCPeerConnection) -> None:
    """The peer's network is gone: its ICE sockets close, no goodbye leaves."""
    for gatherer in ice_gatherers(pc):
        for protocol in gatherer._connection._protocols:
            protocol.transport.close()


async def test_call_without_a_path_ends_after_the_grace_period(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server = await relay_factory(peer_timeout=0.5, resume_grace=1.0)
    client = make_client(server=server)
    await client.connect()
    [call] = list(server.app[REGISTRY])
    go_silent(client.pc)
    await asyncio.sleep(1.0)
    assert not call.closing  # silent, and waiting for a resume
    for _ in range(100):
        if call.closed:
            break
        await asyncio.sleep(0.05)
    assert call.closed
    assert call.close_reason is not None and call.close_reason.startswith("peer went silent")
    assert call.close_reason.endswith("no resume within 1 s")


async def test_call_whose_peer_went_silent_resumes_within_the_grace_period(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server = await relay_factory(peer_timeout=0.5, resume_grace=10.0, local_mode="assistant")
    client = make_client(server=server)
    await client.connect()
    item_id, _ = await say_and_hear(client, CODE_WORD)
    [call] = list(server.app[REGISTRY])
    go_silent(client.pc)
    await asyncio.sleep(1.5)  # the relay has found the peer gone, and waits
    assert not call.closing and call.pc.connectionState == "closed"
    mark = len(client.events)
    await client.resume()
    resumed = await client.wait_for(RESUMED_EVENT, after=mark)
    assert resumed["seconds_without_peer"] >= 1.0
    assert CODE_WORD in await refer_back(client, item_id)



async def test_call_patch_ice_restart_is_a_clear_405(
        relay_factory: RelayFactory, make_client: Callable[..., CallClient]) -> None:
    server = await relay_factory()
    client = make_client(server=server)
    await client.connect()
    url = f"{base_url(server)}/v1/realtime/calls/{client.call_id}"
    fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    async with aiohttp.ClientSession() as http:
        async with http.patch(url, data=fragment, headers={
                "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"}) as response:
            assert response.status == 405 and response.headers["Allow"] == "GET"
            error = (await response.json())["error"]
    assert error["code"] == "ice_restart_unsupported" and "/resume" in error["message"]
    [call] = list(server.app[REGISTRY])
    assert not call.closing
