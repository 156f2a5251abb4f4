"""The client's handshake against a real HTTP server that answers as scripted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from relay.client import CallCreationFailed, create_call, post_offer
from relay.client.handshake import call_id_from_location

OFFER = "v=0\r\n"
ANSWER = "v=0 answer\r\n"


async def scripted_server(aiohttp_server: Any, response: web.Response,
                          seen: list[dict[str, Any]] | None = None) -> str:
    """A server whose ``POST /v1/realtime/calls`` records the request and answers
    ``response``; its base URL."""
    async def calls(request: web.Request) -> web.Response:
        record: dict[str, Any] = {"content_type": request.content_type,
                                  "query": dict(request.query),
                                  "authorization": request.headers.get("Authorization")}
        if request.content_type.startswith("multipart/"):
            record["form"] = {k: str(v) for k, v in (await request.post()).items()}
        else:
            record["body"] = await request.text()
        if seen is not None:
            seen.append(record)
        return response

    app = web.Application()
    app.router.add_post("/v1/realtime/calls", calls)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}"


async def test_handshake_non_201_names_the_status_and_the_api_message(aiohttp_server) -> None:
    error = {"error": {"message": "The relay is at its limit of 1 calls.",
                       "type": "server_error", "code": "capacity_exceeded", "param": None}}
    url = await scripted_server(aiohttp_server, web.json_response(error, status=503))
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    try:
        async with ClientSession() as http:
            with pytest.raises(CallCreationFailed) as caught:
                await create_call(http, url, pc, ice_addresses=("127.0.0.1",))
    finally:
        await pc.close()
    exc = caught.value
    assert str(exc) == ("call creation failed: HTTP 503 capacity_exceeded: "
                        "The relay is at its limit of 1 calls.")
    assert (exc.status, exc.code, exc.type) == (503, "capacity_exceeded", "server_error")
    assert exc.server_message == "The relay is at its limit of 1 calls."
    assert isinstance(exc, RuntimeError)  # what callers of the client catch


async def test_handshake_non_json_error_quotes_the_body(aiohttp_server) -> None:
    url = await scripted_server(aiohttp_server, web.Response(status=400, text="bad offer: no"))
    async with ClientSession() as http:
        with pytest.raises(CallCreationFailed, match=r"^call creation failed: HTTP 400 bad "
                                                     r"offer: no$") as caught:
            await post_offer(http, url, OFFER)
    assert caught.value.status == 400 and caught.value.code is None


@pytest.mark.parametrize("location", [
    "/v1/realtime/calls/rtc_abc",
    "/v1/realtime/calls/rtc_abc/",
    "https://relay.example/v1/realtime/calls/rtc_abc?x=1#y",
])
async def test_handshake_takes_the_call_id_from_location(aiohttp_server, location: str) -> None:
    seen: list[dict[str, Any]] = []
    response = web.Response(status=201, text=ANSWER, headers={"Location": location})
    url = await scripted_server(aiohttp_server, response, seen)
    async with ClientSession() as http:
        answer = await post_offer(http, url + "/", OFFER, api_key="ek_1")
    assert answer == ("rtc_abc", ANSWER, None)  # this server gives no resume token
    assert seen == [{"content_type": "application/sdp", "query": {}, "body": OFFER,
                     "authorization": "Bearer ek_1"}]


async def test_handshake_posts_a_session_as_multipart_and_dcid_in_the_query(
        aiohttp_server) -> None:
    seen: list[dict[str, Any]] = []
    response = web.Response(status=201, text=ANSWER,
                            headers={"Location": "/v1/realtime/calls/rtc_1"})
    url = await scripted_server(aiohttp_server, response, seen)
    session = {"type": "realtime", "instructions": "hi"}
    async with ClientSession() as http:
        await post_offer(http, url, OFFER, session=session, dcid=3)
    [request] = seen
    assert request["content_type"] == "multipart/form-data"
    assert request["query"] == {"dcid": "3"} and request["authorization"] is None
    assert request["form"]["sdp"] == OFFER
    assert json.loads(request["form"]["session"]) == session


async def test_handshake_201_without_location_is_an_error(aiohttp_server) -> None:
    url = await scripted_server(aiohttp_server, web.Response(status=201, text=ANSWER))
    async with ClientSession() as http:
        with pytest.raises(CallCreationFailed, match="no Location header"):
            await post_offer(http, url, OFFER)


def test_handshake_location_without_a_call_id_is_an_error() -> None:
    with pytest.raises(CallCreationFailed, match="no call id"):
        call_id_from_location("/")
