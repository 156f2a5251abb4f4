"""CORS: which origins' pages may read the relay's answers (RELAY_CORS_ORIGINS)."""

from __future__ import annotations

from aiohttp import ClientSession

from relay.server.app import origin_allowed

from ..conftest import base_url

PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


async def _preflight(url: str, origin: str) -> dict[str, str]:
    async with ClientSession() as http:
        async with http.options(f"{url}/v1/realtime/calls",
                                headers={"Origin": origin, **PREFLIGHT}) as r:
            assert r.status == 204
            return dict(r.headers)


async def _post_headers(url: str, origin: str) -> dict[str, str]:
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data="x",
                             headers={"Origin": origin, "Content-Type": "application/sdp"}) as r:
            assert r.status in (400, 401)
            return dict(r.headers)


def test_cors_origin_allowed_matches_listed_origins_or_any() -> None:
    assert origin_allowed("https://a.example", ("*",))
    assert origin_allowed("https://A.example", ("https://a.example",))
    assert not origin_allowed("https://b.example", ("https://a.example",))
    assert not origin_allowed("https://a.example.evil", ("https://a.example",))
    assert not origin_allowed("null", ())


async def test_cors_open_mode_lets_any_origin_read_location(relay) -> None:
    headers = await _preflight(base_url(relay), "https://app.example")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in headers["Access-Control-Allow-Headers"]
    posted = await _post_headers(base_url(relay), "https://app.example")
    assert posted["Access-Control-Expose-Headers"] == "Location, X-Relay-Resume-Token"


async def test_cors_token_mode_allows_no_other_origin_by_default(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    for headers in (await _preflight(base_url(server), "https://app.example"),
                    await _post_headers(base_url(server), "https://app.example")):
        assert not [name for name in headers if name.lower().startswith("access-control-")]
        assert headers["Vary"] == "Origin"


async def test_cors_listed_origins_only(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",),
                                 cors_origins=("https://app.example",))
    allowed = await _preflight(base_url(server), "https://app.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    posted = await _post_headers(base_url(server), "https://app.example")
    assert posted["Access-Control-Expose-Headers"] == "Location, X-Relay-Resume-Token"
    other = await _preflight(base_url(server), "https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Methods" not in other
