"""The HTTP surface: CORS, errors, auth and client secrets, capacity."""

from __future__ import annotations

import os

from aiohttp import ClientSession

from relay.client import CallClient

from ..conftest import base_url, live_calls


async def test_http_preflight_allows_the_headers_and_exposes_location(relay) -> None:
    async with ClientSession() as http:
        async with http.options(f"{base_url(relay)}/v1/realtime/calls", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-openai-agents-sdk",
        }) as response:
            assert response.status == 204
            h = response.headers
            assert h["Access-Control-Allow-Origin"] == "https://app.example"
            assert "POST" in h["Access-Control-Allow-Methods"]
            assert "x-openai-agents-sdk" in h["Access-Control-Allow-Headers"]


async def test_http_responses_expose_location_to_other_origins(relay, make_client) -> None:
    async with ClientSession() as http:
        async with http.post(f"{base_url(relay)}/v1/realtime/calls", data="x",
                             headers={"Origin": "https://app.example",
                                      "Content-Type": "application/sdp"}) as response:
            assert response.status == 400
            assert response.headers["Access-Control-Expose-Headers"] == "Location"
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_http_unknown_route_and_bad_content_type_are_json_errors(relay) -> None:
    async with ClientSession() as http:
        async with http.get(f"{base_url(relay)}/v1/nothing") as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with http.post(f"{base_url(relay)}/v1/realtime/calls", json={"sdp": "v=0"}) as r:
            assert r.status == 415
            assert (await r.json())["error"]["code"] == "unsupported_content_type"
        async with http.post(f"{base_url(relay)}/v1/realtime/calls?dcid=x", data="v=0",
                             headers={"Content-Type": "application/sdp"}) as r:
            assert r.status == 400


async def test_http_multipart_with_bad_session_is_rejected(relay) -> None:
    from aiohttp import FormData
    cases = (("{nope", "invalid_json"), ('{"type": "translation"}', "invalid_value"))
    for session, code in cases:
        form = FormData(default_to_multipart=True)
        form.add_field("sdp", "v=0\r\n")
        form.add_field("session", session)
        async with ClientSession() as http:
            async with http.post(f"{base_url(relay)}/v1/realtime/calls", data=form) as r:
                assert r.status == 400
                assert (await r.json())["error"]["code"] == code
    assert live_calls(relay) == 0


async def test_http_keys_guard_calls_and_client_secrets_carry_a_session(
        relay_factory, make_client) -> None:
    server = await relay_factory(relay_api_keys=("sk-server-secret",))
    url = base_url(server)
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data="v=0",
                             headers={"Content-Type": "application/sdp",
                                      "Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
            body = await r.text()
            assert "sk-server-secret" not in body and "wrong" not in body
        async with http.post(f"{url}/v1/realtime/client_secrets", json={}) as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer sk-server-secret"}
        async with http.post(f"{url}/v1/realtime/client_secrets", headers=headers,
                             json={"expires_after": {"anchor": "created_at", "seconds": 5}}) as r:
            assert r.status == 400
        async with http.post(f"{url}/v1/realtime/client_secrets", headers=headers, json={
            "expires_after": {"anchor": "created_at", "seconds": 60},
            "session": {"type": "realtime", "instructions": "from the secret"},
        }) as r:
            assert r.status == 200
            secret = await r.json()
    assert secret["value"].startswith("ek_") and secret["session"]["instructions"] == \
        "from the secret"
    client: CallClient = make_client(server=server, api_key=secret["value"])
    await client.connect()
    created = await client.wait_for("session.created")
    assert created["session"]["instructions"] == "from the secret"
    assert await client.hangup() == 200
    stranger: CallClient = make_client(server=server, api_key="ek_not_minted_here")
    try:
        await stranger.connect()
        raise AssertionError("an unknown client secret was accepted")
    except RuntimeError as exc:
        assert "401" in str(exc)


async def test_http_capacity_limit_is_a_503(relay_factory, make_client) -> None:
    server = await relay_factory(max_calls=1)
    first: CallClient = make_client(server=server)
    await first.connect()
    second: CallClient = make_client(server=server)
    try:
        await second.connect()
        raise AssertionError("the limit was not enforced")
    except RuntimeError as exc:
        assert "503" in str(exc) and "capacity_exceeded" in str(exc)
    assert live_calls(server) == 1


async def test_http_health(relay) -> None:
    async with ClientSession() as http:
        async with http.get(f"{base_url(relay)}/healthz") as r:
            assert await r.json() == {"status": "ok", "calls": 0, "draining": False,
                                      "worker": None, "pid": os.getpid()}
