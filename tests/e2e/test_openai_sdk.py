"""The official ``openai`` package, unchanged but for its ``base_url``, as a client of the relay.

How a user of the SDK gets the call id: ``client.realtime.calls.create(sdp=...)`` returns
the SDP answer (an ``HttpxBinaryResponseContent``: ``.text`` is the answer), and its
``.response`` is the HTTP response, whose ``Location`` header ends with the call id::

    answer = client.realtime.calls.create(sdp=offer)
    call_id = answer.response.headers["Location"].rsplit("/", 1)[-1]

``client.realtime.calls.with_raw_response.create(...)`` gives the same header as
``.headers`` and the answer as ``.text``. The SDK posts the offer raw
(``application/sdp``) when there is no session, and as multipart/form-data with typed
parts (``application/sdp``, ``application/json``, no filenames) when there is one.

The sync client runs in a thread (``asyncio.to_thread``): the relay runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI, OpenAI
from openai.types.realtime import ClientSecretCreateResponse
from openai.types.realtime.realtime_session_create_response import (
    RealtimeSessionCreateResponse,
)

from ..conftest import base_url, live_calls
from ..support.offer import OfferPeer

SESSION: dict[str, Any] = {"type": "realtime", "instructions": "Answer like a lighthouse keeper.",
                           "audio": {"output": {"voice": "verse"}}}


def call_id_from(location: str) -> str:
    """The call id: the last segment of ``Location: /v1/realtime/calls/<id>``."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def requested(session: dict[str, Any]) -> bool:
    return session.get("instructions") == SESSION["instructions"]


class Sdk:
    """The sync or the async client of the official SDK, behind one awaitable interface."""

    def __init__(self, kind: str, server: TestServer, api_key: str = "sk-test") -> None:
        url = f"{base_url(server)}/v1"
        self.sync = OpenAI(base_url=url, api_key=api_key) if kind == "sync" else None
        self.aio = AsyncOpenAI(base_url=url, api_key=api_key) if kind == "async" else None

    async def create_call(self, sdp: str, session: dict[str, Any] | None = None
                          ) -> tuple[str, str]:
        """Create a call; return the SDP answer and the call id."""
        extra: dict[str, Any] = {"session": session} if session is not None else {}
        if self.sync is not None:
            answer = await asyncio.to_thread(self.sync.realtime.calls.create, sdp=sdp, **extra)
            return answer.text, call_id_from(answer.response.headers["Location"])
        assert self.aio is not None
        raw = await self.aio.realtime.calls.with_raw_response.create(sdp=sdp, **extra)
        return raw.text, call_id_from(raw.headers["Location"])

    async def hangup(self, call_id: str) -> None:
        if self.sync is not None:
            await asyncio.to_thread(self.sync.realtime.calls.hangup, call_id)
        else:
            assert self.aio is not None
            await self.aio.realtime.calls.hangup(call_id)

    async def close(self) -> None:
        if self.sync is not None:
            self.sync.close()
        if self.aio is not None:
            await self.aio.close()


@asynccontextmanager
async def sdk(kind: str, server: TestServer, api_key: str = "sk-test") -> AsyncIterator[Sdk]:
    client = Sdk(kind, server, api_key)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("form", ["raw", "multipart"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_openai_sdk_creates_a_call_and_hangs_it_up(relay, kind: str, form: str) -> None:
    session = SESSION if form == "multipart" else None
    async with sdk(kind, relay) as client, OfferPeer() as peer:
        answer, call_id = await client.create_call(await peer.offer(), session)
        assert call_id.startswith("rtc_u1_") and live_calls(relay) == 1
        await peer.accept(answer)
        if session is not None:
            got = await peer.session_matching(requested)
            assert got["audio"]["output"]["voice"] == "verse"
        else:
            await peer.next_event()
        assert peer.received[0]["type"] == "session.created"
        await client.hangup(call_id)
        assert live_calls(relay) == 0
        with pytest.raises(openai.NotFoundError) as info:
            await client.hangup(call_id)
        assert info.value.status_code == 404 and info.value.code == "call_id_not_found"


async def test_openai_sdk_first_event_describes_the_requested_session(relay) -> None:
    async with sdk("async", relay) as client, OfferPeer() as peer:
        answer, call_id = await client.create_call(await peer.offer(), SESSION)
        await peer.accept(answer)
        first = await peer.next_event()
        await client.hangup(call_id)
    assert first["type"] == "session.created"
    assert first["session"]["instructions"] == SESSION["instructions"]
    assert first["session"]["audio"]["output"]["voice"] == "verse"


async def test_openai_sdk_client_secret_parses_typed_and_binds_the_call(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    url = f"{base_url(server)}/v1"
    async with AsyncOpenAI(base_url=url, api_key="sk-server") as client:
        secret = await client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 120}, session=SESSION)
        raw = await client.realtime.client_secrets.with_raw_response.create(session=SESSION)
    assert isinstance(secret, ClientSecretCreateResponse)
    assert secret.value.startswith("ek_")
    typed = secret.session
    assert isinstance(typed, RealtimeSessionCreateResponse)  # not a dict: it parsed
    assert typed.id.startswith("sess_") and typed.object == "realtime.session"
    assert typed.instructions == SESSION["instructions"] and typed.model
    assert typed.audio is not None and typed.audio.output is not None
    assert typed.audio.output.voice == "verse"
    assert typed.audio.input is not None and typed.audio.input.turn_detection is not None
    # The SDK builds its models without validating; validate the wire JSON for real.
    body = json.loads(raw.text)
    validated = pydantic.TypeAdapter(ClientSecretCreateResponse).validate_python(body)
    assert isinstance(validated.session, RealtimeSessionCreateResponse)
    assert body["expires_at"] == body["session"]["expires_at"]
    # A browser holding the key creates a call that gets the secret's session.
    async with sdk("async", server, api_key=secret.value) as browser, OfferPeer() as peer:
        answer, call_id = await browser.create_call(await peer.offer())
        await peer.accept(answer)
        got = await peer.session_matching(requested)
        assert got["audio"]["output"]["voice"] == "verse"
        await browser.hangup(call_id)


async def test_openai_sdk_open_relay_takes_an_ek_key_it_never_minted(relay) -> None:
    async with sdk("async", relay, api_key="ek_from_a_browser_sdk") as client, \
            OfferPeer() as peer:
        answer, call_id = await client.create_call(await peer.offer(), SESSION)
        await peer.accept(answer)
        await peer.session_matching(requested)
        await client.hangup(call_id)
