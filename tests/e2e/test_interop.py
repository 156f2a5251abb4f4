"""What an unmodified client of the hosted endpoint relies on: the session's story, the
model it asked for, and events larger than its data channel takes."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from relay.client import CallClient

from ..conftest import base_url
from ..support.offer import OfferPeer


async def post_offer(server: TestServer, peer: OfferPeer, *, query: str = "",
                     session: dict[str, Any] | None = None) -> tuple[int, str]:
    """Post ``peer``'s offer (raw, or multipart with ``session``); status and body."""
    url = f"{base_url(server)}/v1/realtime/calls{query}"
    sdp = await peer.offer()
    async with ClientSession() as http:
        if session is None:
            response = await http.post(url, data=sdp,
                                       headers={"Content-Type": "application/sdp"})
        else:
            from aiohttp import FormData

            form = FormData(default_to_multipart=True)
            form.add_field("sdp", sdp)
            form.add_field("session", json.dumps(session))
            response = await http.post(url, data=form)
        async with response:
            return response.status, await response.text()


async def first_session(server: TestServer, **kwargs: Any) -> dict[str, Any]:
    """Create a call; return the session of its first event, which must be session.created."""
    async with OfferPeer() as peer:
        status, body = await post_offer(server, peer, **kwargs)
        assert status == 201, body
        await peer.accept(body)
        first = await peer.next_event()
        assert first["type"] == "session.created"
        session: dict[str, Any] = first["session"]
        return session


async def test_interop_model_defaults_to_the_relays(relay_factory) -> None:
    server = await relay_factory(model="gpt-realtime", models=("gpt-realtime-mini",))
    assert (await first_session(server))["model"] == "gpt-realtime"


@pytest.mark.parametrize("how", ["query", "session"])
async def test_interop_model_requested_is_used_when_allowed(relay_factory, how: str) -> None:
    server = await relay_factory(models=("gpt-realtime-mini",))
    kwargs: dict[str, Any] = (
        {"query": "?model=gpt-realtime-mini"} if how == "query"
        else {"session": {"type": "realtime", "model": "gpt-realtime-mini"}})
    assert (await first_session(server, **kwargs))["model"] == "gpt-realtime-mini"


async def test_interop_any_model_when_no_list_is_set(relay) -> None:
    assert (await first_session(relay, query="?model=my-own-model"))["model"] == "my-own-model"


@pytest.mark.parametrize(("how", "param"), [("query", "model"), ("session", "session.model")])
async def test_interop_model_not_allowed_is_a_400_naming_it(relay_factory, how: str,
                                                            param: str) -> None:
    server = await relay_factory(models=("gpt-realtime-mini",))
    kwargs: dict[str, Any] = (
        {"query": "?model=gpt-4o"} if how == "query"
        else {"session": {"type": "realtime", "model": "gpt-4o"}})
    async with OfferPeer() as peer:
        status, body = await post_offer(server, peer, **kwargs)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["param"] == param and error["code"] == "model_not_allowed"
    assert error["type"] == "invalid_request_error" and "gpt-4o" in error["message"]


async def test_interop_no_session_updated_until_the_client_asks(make_client) -> None:
    session = {"type": "realtime", "instructions": "Be terse.",
               "audio": {"output": {"voice": "verse"}}}
    client: CallClient = make_client(session=session)
    await client.connect()
    created = await client.wait_for("session.created")
    assert client.types()[0] == "session.created"
    assert created["session"]["instructions"] == "Be terse."
    assert created["session"]["audio"]["output"]["voice"] == "verse"
    await asyncio.sleep(0.5)
    assert "session.updated" not in client.types()
    client.send({"type": "session.update", "session": {"type": "realtime",
                                                       "instructions": "Be kind."}})
    updated = await client.wait_for("session.updated")
    assert updated["session"]["instructions"] == "Be kind."
    await asyncio.sleep(0.3)
    assert client.types().count("session.updated") == 1


def small_channel(limit: int) -> Any:
    """An offer edit: the client says its data channel takes ``limit`` bytes a message."""
    def edit(sdp: str) -> str:
        return re.sub(r"a=max-message-size:\d+", f"a=max-message-size:{limit}", sdp)
    return edit


async def test_interop_large_retrieved_item_loses_its_audio_not_the_call(
        make_client, speech: bytes) -> None:
    # agents-js retrieves each user item after its turn; the item carries its audio
    # (here ~2 s: ~130 kB of base64), far over a 16 kB channel.
    client: CallClient = make_client(speech, edit_offer=small_channel(16_384))
    await client.connect()
    committed = await client.wait_for("input_audio_buffer.committed", timeout=20)
    client.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
    retrieved = await client.wait_for("conversation.item.retrieved", timeout=10)
    assert retrieved["item"]["id"] == committed["item_id"]
    assert retrieved["relay_omitted"] == ["item.content[0].audio"]
    assert retrieved["item"]["content"][0]["audio"] is None
    await client.wait_for("response.done", timeout=20)
    # The call goes on: a second turn is heard and answered.
    done = len(client.events)
    client.source.play(speech)  # type: ignore[attr-defined]
    await client.wait_for("response.done", timeout=30, after=done)
    assert not [e for _, e in client.events if e["type"] == "error"]
