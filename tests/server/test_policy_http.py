"""Locked fields at the HTTP edge: call creation and minting refuse a session changing one."""

from __future__ import annotations

import json

from aiohttp import ClientSession, FormData

from ..conftest import base_url, live_calls

LOCKED = {"default_session": {"type": "realtime", "instructions": "Be brief."},
          "locked_fields": ("instructions", "tools")}


async def test_policy_http_call_with_a_locked_field_in_its_session_is_a_400(
        relay_factory) -> None:
    server = await relay_factory(**LOCKED)
    form = FormData()
    form.add_field("sdp", "v=0\r\n", content_type="application/sdp")
    form.add_field("session", json.dumps({"type": "realtime", "tools": [{"name": "x"}]}),
                   content_type="application/json")
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/calls", data=form) as r:
            assert r.status == 400
            error = (await r.json())["error"]
    assert error["code"] == "locked_field" and error["param"] == "session.tools"
    assert live_calls(server) == 0


async def test_policy_http_minting_a_key_that_changes_a_locked_field_is_a_400(
        relay_factory) -> None:
    server = await relay_factory(**LOCKED)
    async with ClientSession() as http:
        url = f"{base_url(server)}/v1/realtime/client_secrets"
        async with http.post(url, json={"session": {"type": "realtime",
                                                    "instructions": "Other."}}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "session.instructions"
        async with http.post(url, json={"session": {"type": "realtime",
                                                    "instructions": "Be brief."}}) as r:
            assert r.status == 200
