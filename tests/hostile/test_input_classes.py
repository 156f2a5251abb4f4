"""One regression test per class of hostile input issue 25 found, against a real relay:
each used to end in a 500, a 502, a traceback in the log, or a call that died without an
``error`` event. Now each gets a 4xx in the API's JSON error shape, or an ``error`` event
naming the problem while the call goes on (tests/hostile/conftest.py watches for 5xx,
tracebacks and silent call endings over every test here).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, FormData
from aiohttp.test_utils import TestServer

from relay.client import CallClient, PcmSource
from relay.server.app import REGISTRY

from ..conftest import LOOPBACK, RelayFactory, base_url
from ..support.offer import OfferPeer

DEEP_ARRAYS = "[" * 10_000 + "]" * 10_000
DEEP_OBJECTS = '{"a":' * 10_000 + "1" + "}" * 10_000
#: Deep, yet under what Python's own parser takes (it would pass its recursion limit).
NEARLY_TOO_DEEP = '{"type":"session.update","session":' + "[" * 900 + "]" * 900 + "}"
SERVER_KEY = "sk-hostile-server"
AUTH = {"Authorization": f"Bearer {SERVER_KEY}"}


async def real_offer() -> str:
    async with OfferPeer() as peer:
        return await peer.offer()


async def error_of(response: Any) -> dict[str, Any]:
    """The JSON error of a 4xx answer, checked for the API's shape."""
    assert 400 <= response.status < 500, (response.status, await response.text())
    error: dict[str, Any] = (await response.json())["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return error


async def raw_request(server: TestServer, request: bytes) -> bytes:
    """The status line of the answer to ``request``, sent as is on a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    return answer.split(b"\r\n", 1)[0]


async def connected_call(relay: TestServer) -> CallClient:
    client = CallClient(base_url(relay), PcmSource(), ice_addresses=LOOPBACK)
    await client.connect()
    await client.wait_for("session.created")
    return client


async def answer_to(client: CallClient, message: str | bytes) -> dict[str, Any]:
    """The ``error`` event that answers ``message`` on ``client``'s data channel."""
    after = len(client.events)
    client.channel.send(message)
    return await client.wait_for("error", after=after, timeout=10)


async def still_answers(client: CallClient) -> None:
    """The call goes on: its channel is open and the upstream still takes events."""
    assert client.channel.readyState == "open"
    after = len(client.events)
    client.send({"type": "session.update", "session": {"type": "realtime",
                                                       "instructions": "Still here."}})
    await client.wait_for("session.updated", after=after, timeout=10)


# ------------------------------------------------------------------ 1. deep JSON

async def test_deep_json_refused_in_bodies_and_session_parts(
        relay_factory: RelayFactory) -> None:
    relay = await relay_factory(relay_api_keys=(SERVER_KEY,))
    url = base_url(relay)
    offer = await real_offer()
    async with ClientSession() as http:
        for body in (DEEP_ARRAYS, DEEP_OBJECTS, '{"session": ' + DEEP_ARRAYS + "}"):
            async with http.post(f"{url}/v1/realtime/client_secrets", data=body,
                                 headers={**AUTH, "Content-Type": "application/json"}) as r:
                assert (await error_of(r))["code"] == "invalid_json"
        form = FormData()
        form.add_field("sdp", offer, content_type="application/sdp")
        form.add_field("session", DEEP_OBJECTS, content_type="application/json")
        async with http.post(f"{url}/v1/realtime/calls", data=form, headers=AUTH) as r:
            error = await error_of(r)
            assert (error["code"], error["param"]) == ("invalid_json", "session")
    assert len(relay.app[REGISTRY]) == 0


@pytest.mark.parametrize("record", ["off", "all"])
async def test_deep_json_on_the_data_channel_gets_an_error_and_the_call_goes_on(
        relay_factory: RelayFactory, tmp_path: Path, record: str) -> None:
    # Recorded too: the recorder reads every client message before the call's core does.
    relay = await relay_factory(record=record, record_dir=str(tmp_path))
    client = await connected_call(relay)
    try:
        for message in (DEEP_ARRAYS, DEEP_OBJECTS, NEARLY_TOO_DEEP,
                        '{"type":"response.cancel","event_id":"\\ud800"}',
                        '{"type":"conversation.item.create","item":{"type":"mcp_call",'
                        '"name":"x","server_label":"s","arguments":"' + "[" * 5000 + '"}}'):
            error = (await answer_to(client, message))["error"]
            assert error["code"] in ("invalid_json", "invalid_value", "invalid_request_error",
                                     "unknown_parameter", "invalid_type"), error
            assert error["code"] != "server_error"
        await still_answers(client)
    finally:
        await client.close()


async def test_deep_json_on_the_sideband_gets_an_error_and_it_stays_attached(
        relay: TestServer) -> None:
    client = await connected_call(relay)
    try:
        url = f"{base_url(relay)}/v1/realtime?call_id={client.call_id}"
        async with ClientSession() as http, http.ws_connect(url, headers=AUTH) as ws:
            for message in (DEEP_ARRAYS, NEARLY_TOO_DEEP):
                await ws.send_str(message)
                event = await ws.receive_json(timeout=10)
                assert (event["type"], event["error"]["code"]) == ("error", "invalid_json")
            await ws.send_str(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "Sideband here."}}))
            while (event := await ws.receive_json(timeout=10))["type"] != "session.updated":
                pass
            assert not ws.closed
        await still_answers(client)
    finally:
        await client.close()


# ------------------------------------------------- 2. text that is not what it claims

@pytest.mark.parametrize("dcid", ["²", "①", "9" * 5000, "-1", "65535", " 1", "0x10"])
async def test_dcid_that_is_not_a_channel_id_is_refused(relay: TestServer, dcid: str) -> None:
    async with ClientSession() as http:
        async with http.post(f"{base_url(relay)}/v1/realtime/calls", params={"dcid": dcid},
                             data=await real_offer(),
                             headers={"Content-Type": "application/sdp"}) as r:
            error = await error_of(r)
    assert (error["code"], error["param"]) == ("invalid_value", "dcid")


@pytest.mark.parametrize("path", ["/v1/realtime/calls", "/v1/realtime/client_secrets",
                                  "/v1/realtime?call_id=rtc_x", "/stats"])
async def test_authorization_that_is_not_utf8_is_401(relay_factory: RelayFactory,
                                                     path: str) -> None:
    relay = await relay_factory(relay_api_keys=(SERVER_KEY,))
    method = b"GET" if path.startswith(("/stats", "/v1/realtime?")) else b"POST"
    for token in (b"\xff\xfe\xfd", b"sk-\xc3\x28", b"ek_\xed\xa0\x80x", b"sk-\xc2\xa0x"):
        status = await raw_request(relay, method + b" " + path.encode() + b" HTTP/1.1\r\n"
                                   b"Host: x\r\nAuthorization: Bearer " + token + b"\r\n"
                                   b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert status == b"HTTP/1.1 401 Unauthorized", (token, status)


async def test_charsets_that_are_not_text_encodings_are_415(relay_factory: RelayFactory) -> None:
    relay = await relay_factory(relay_api_keys=(SERVER_KEY,))
    url = base_url(relay)
    async with ClientSession() as http:
        for charset in ("bogus", "base64", "rot13", "zlib", "x" * 200):
            async with http.post(f"{url}/v1/realtime/client_secrets", data=b"{}", headers={
                    **AUTH, "Content-Type": f"application/json; charset={charset}"}) as r:
                assert r.status == 415 and (await error_of(r))["code"] == "unsupported_charset"
            async with http.post(f"{url}/v1/realtime/calls", data=b"v=0", headers={
                    **AUTH, "Content-Type": f"application/sdp; charset={charset}"}) as r:
                assert r.status == 415 and (await error_of(r))["param"] == "sdp"
        # A real charset the bytes are not text in.
        async with http.post(f"{url}/v1/realtime/client_secrets", data=b"\xff\xfe\x00{", headers={
                **AUTH, "Content-Type": "application/json; charset=utf-8"}) as r:
            assert (await error_of(r))["code"] in ("invalid_value", "invalid_json")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_content_encoding_that_does_not_decode_is_400(relay_factory: RelayFactory,
                                                            encoding: str) -> None:
    relay = await relay_factory(relay_api_keys=(SERVER_KEY,))
    for path, kind, body in [("/v1/realtime/client_secrets", b"application/json", b"{}"),
                             ("/v1/realtime/calls", b"application/sdp", b"v=0\r\n" * 200)]:
        status = await raw_request(relay, b"POST " + path.encode() + b" HTTP/1.1\r\n"
                                   b"Host: x\r\nAuthorization: Bearer " + SERVER_KEY.encode()
                                   + b"\r\nContent-Type: " + kind + b"\r\nContent-Encoding: "
                                   + encoding.encode() + b"\r\nContent-Length: %d\r\n"
                                   b"Connection: close\r\n\r\n" % len(body) + body)
        assert status.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400", b"HTTP/1.1 415")), status


@pytest.mark.parametrize("headers", [
    b"X: " + b"a" * 100_000,
    b"".join(b"X%d: y\r\n" % i for i in range(1000)).rstrip(),
    b"\x01\x02garbage",
    b"no colon here",
    b"X: a\x00b",
], ids=["100 KB line", "1000 headers", "control bytes", "no colon", "NUL"])
async def test_multipart_parts_with_broken_headers_are_400(relay: TestServer,
                                                           headers: bytes) -> None:
    part = (b'--BB\r\nContent-Disposition: form-data; name="sdp"\r\n' + headers
            + b"\r\n\r\nv=0\r\n--BB--\r\n")
    status = await raw_request(relay, b"POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: multipart/form-data; boundary=BB\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(part)
                               + part)
    assert status == b"HTTP/1.1 400 Bad Request", status


# ----------------------------------------------------------- 3. offers aiortc trips on

async def test_offers_aiortc_cannot_answer_are_refused_before_it_sees_them(
        relay: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    offer = await real_offer()
    application = offer[offer.index("m=application"):]
    cases = {
        "two application sections": offer + application,
        "json sent as sdp": json.dumps({"sdp": offer, "session": {"type": "realtime"}}),
        "no fingerprint": "\r\n".join(line for line in offer.split("\r\n")
                                      if not line.startswith("a=fingerprint")),
    }
    async with ClientSession() as http:
        for name, body in cases.items():
            async with http.post(f"{base_url(relay)}/v1/realtime/calls", data=body,
                                 headers={"Content-Type": "application/sdp"}) as r:
                error = await error_of(r)
            assert (error["code"], error["param"]) == ("invalid_offer", "sdp"), name
    assert len(relay.app[REGISTRY]) == 0
    await asyncio.sleep(0.2)  # an aiortc task failing late would log by now


# ------------------------------------------- 4. values the upstream cannot take

async def test_model_names_the_upstream_url_cannot_carry_are_refused(
        relay_factory: RelayFactory) -> None:
    relay = await relay_factory(relay_api_keys=(SERVER_KEY,))
    url = base_url(relay)
    offer = await real_offer()
    async with ClientSession() as http:
        for model in ("m" * 10_000, "gpt realtime", "gpt-realtime\r\nX: y", "é", "../x?y=1"):
            form = FormData()
            form.add_field("sdp", offer, content_type="application/sdp")
            form.add_field("session", json.dumps({"type": "realtime", "model": model}),
                           content_type="application/json")
            async with http.post(f"{url}/v1/realtime/calls", data=form, headers=AUTH) as r:
                error = await error_of(r)
                assert (error["code"], error["param"]) == ("invalid_value", "session.model")
            async with http.post(f"{url}/v1/realtime/client_secrets", headers=AUTH,
                                 json={"session": {"type": "realtime", "model": model}}) as r:
                assert (await error_of(r))["param"] == "session.model"
        async with http.post(f"{url}/v1/realtime/calls", params={"model": "m" * 4000},
                             data=offer, headers={**AUTH, "Content-Type": "application/sdp"}) as r:
            assert (await error_of(r))["param"] == "model"
    assert len(relay.app[REGISTRY]) == 0


async def test_lone_surrogates_are_refused_at_the_edge(relay: TestServer) -> None:
    offer = await real_offer()
    async with ClientSession() as http:
        form = FormData()
        form.add_field("sdp", offer, content_type="application/sdp")
        form.add_field("session", '{"type": "realtime", "instructions": "a\\ud800b"}',
                       content_type="application/json")
        async with http.post(f"{base_url(relay)}/v1/realtime/calls", data=form) as r:
            error = await error_of(r)
        assert (error["code"], error["param"]) == ("invalid_value", "session.instructions")
    client = await connected_call(relay)
    try:
        for message, param in [
            ('{"type":"session.update","session":{"instructions":"\\udfff"}}',
             "session.instructions"),
            ('{"type":"conversation.item.create","item":{"type":"message","role":"user",'
             '"content":[{"type":"input_text","text":"x\\ud83d"}]}}', "item.content[0].text"),
            ('{"type":"response.create","response":{"metadata":{"\\ud800":"k"}}}',
             "response.metadata"),
        ]:
            error = (await answer_to(client, message))["error"]
            assert (error["code"], error["param"]) == ("invalid_value", param)
        # A pair written as escapes is one character, and welcome.
        client.channel.send('{"type":"session.update","session":{"instructions":"\\ud83d\\ude00"}}')
        await client.wait_for("session.updated", lambda e: e["session"]["instructions"] == "😀")
        await still_answers(client)
    finally:
        await client.close()


# -------------------------------------------- 5. the embedded server checks types

@pytest.mark.parametrize("event", [
    {"type": "response.create", "response": {"audio": 5}},
    {"type": "response.create", "response": {"audio": True}},
    {"type": "response.create", "response": {"audio": {"output": []}}},
    {"type": "response.create", "response": {"instructions": {"a": 1}}},
    {"type": "response.create", "response": {"input": "hello"}},
    {"type": "session.update", "session": {"audio": {"input": {"turn_detection": 5}}}},
    {"type": "session.update", "session": {"tools": [{"type": "function", "name": 5}]}},
    {"type": "conversation.item.create", "item": {"type": "message", "content": "hi"}},
    {"type": "conversation.item.truncate", "item_id": "x", "content_index": "0",
     "audio_end_ms": 10},
], ids=lambda event: json.dumps(event)[:60])
async def test_wrong_types_in_client_events_get_invalid_type_and_the_call_goes_on(
        relay: TestServer, event: dict[str, Any]) -> None:
    client = await connected_call(relay)
    try:
        error = (await answer_to(client, json.dumps(event)))["error"]
        assert error["code"] == "invalid_type", error
        assert error["param"] and error["param"] in error["message"]
        await still_answers(client)
    finally:
        await client.close()


# ------------------------------------------ 6. malformed requests and the log

async def test_malformed_requests_cost_one_info_line_not_a_traceback(
        relay: TestServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    requests = [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
                b"GARBAGE\r\n\r\n",
                b"GET /\x01 HTTP/1.1\r\n\r\n",
                b"POST /v1/realtime/calls HTTP/1.1\r\nContent-Length: x\r\n\r\n"] * 4
    for request in requests:
        assert b" 400 " in await raw_request(relay, request)
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    info = [r for r in lines if r.levelno == logging.INFO]
    assert len(info) == 1, [r.getMessage() for r in info]
    assert "malformed request answered 400" in info[0].getMessage()
    assert not [r for r in lines if r.exc_info or r.levelno > logging.INFO]


# ------------------------------------------- 7. a huge message on the data channel

async def test_data_channel_message_over_the_limit_is_dropped_as_it_arrives(
        relay_factory: RelayFactory) -> None:
    relay = await relay_factory(client_max_message_bytes=64 * 1024)
    client = await connected_call(relay)
    try:
        # A client that ignores the relay's a=max-message-size (aiortc's own check off).
        client.pc.sctp._remote_max_message_size = 0
        huge = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 2_000_000})
        error = (await answer_to(client, huge))["error"]
        assert error["code"] == "message_too_large", error
        # The message after it, on the same ordered stream, is handled in order.
        error = (await answer_to(client, '{"type": ""}'))["error"]
        assert error["code"] == "missing_required_parameter"
        await still_answers(client)
    finally:
        await client.close()
