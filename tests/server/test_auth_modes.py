"""Auth modes through the real app: what token mode guards, what open mode lets through,
and the repeated warning of open mode on a public address."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import ClientSession

from relay.config import Settings
from relay.errors import ConfigError
from relay.server import app as app_module
from relay.server.app import create_app

from ..conftest import base_url


async def test_auth_modes_token_mode_guards_the_server_endpoints(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",), auth="token")
    url = base_url(server)
    async with ClientSession() as http:
        for header in ({}, {"Authorization": "Bearer ek_anything"},
                       {"Authorization": "Bearer sk-guess"}):
            async with http.get(f"{url}/stats", headers=header) as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "invalid_api_key"
            async with http.post(f"{url}/v1/realtime/client_secrets", headers=header,
                                 json={}) as r:
                assert r.status == 401
            async with http.get(f"{url}/v1/realtime?call_id=rtc_x", headers=header) as r:
                assert r.status == 401
        async with http.get(f"{url}/stats", headers={"api-key": "sk-server"}) as r:
            assert r.status == 200


async def test_auth_modes_explicit_open_accepts_any_bearer_even_with_keys(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",), auth="open")
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/stats",
                            headers={"Authorization": "Bearer whatever"}) as r:
            assert r.status == 200


async def test_auth_modes_open_on_a_public_address_warns_again_and_again(
        relay_factory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "OPEN_WARNING_INTERVAL", 0.05)
    caplog.set_level(logging.WARNING, logger=app_module.__name__)
    # The test server listens on loopback whatever settings.host says: the warning follows
    # the configured address.
    server = await relay_factory(host="0.0.0.0", auth="open")
    assert server.app[app_module.SETTINGS].open_to_the_network
    for _ in range(100):
        warnings = [r for r in caplog.records if "auth is open on 0.0.0.0" in r.getMessage()]
        if len(warnings) >= 3:
            break
        await asyncio.sleep(0.02)
    assert len(warnings) >= 3 and all(r.levelno == logging.WARNING for r in warnings)


async def test_auth_modes_loopback_open_mode_does_not_warn(
        relay_factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=app_module.__name__)
    await relay_factory()
    assert not [r for r in caplog.records if "auth is open" in r.getMessage()]


async def test_auth_modes_a_key_minted_by_one_relay_opens_calls_on_another(relay_factory) -> None:
    shared = {"relay_api_keys": ("sk-server",), "signing_secret": "s" * 32}
    minting, other = await relay_factory(**shared), await relay_factory(**shared)
    stranger = await relay_factory(relay_api_keys=("sk-server",), signing_secret="t" * 32)
    async with ClientSession() as http:
        async with http.post(f"{base_url(minting)}/v1/realtime/client_secrets",
                             headers={"Authorization": "Bearer sk-server"}, json={}) as r:
            key = (await r.json())["value"]
        tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
        for server, token, status in ((other, key, 400), (stranger, key, 401),
                                      (other, tampered, 401), (other, key[:40], 401)):
            # A bad offer: past authentication the SDP is refused with a 400.
            async with http.post(f"{base_url(server)}/v1/realtime/calls", data="v=0",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/sdp"}) as r:
                assert r.status == status
                error = (await r.json())["error"]
                assert set(error) == {"message", "type", "code", "param"}
                if status == 401:
                    assert error["code"] == "invalid_api_key" and token not in error["message"]


async def test_auth_modes_open_mode_accepts_a_tampered_key_without_its_session(
        relay_factory) -> None:
    server = await relay_factory()
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/calls", data="v=0",
                             headers={"Authorization": "Bearer ek_not.a.key",
                                      "Content-Type": "application/sdp"}) as r:
            assert r.status == 400


def test_auth_modes_create_app_refuses_token_mode_without_keys() -> None:
    with pytest.raises(ConfigError):
        create_app(Settings(host="0.0.0.0"))
