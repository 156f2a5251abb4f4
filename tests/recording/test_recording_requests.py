"""Who asks for a recording: ``--record all``, a client secret minted with
``"record": true``, or a server key's ``?record=true``; nothing is recorded otherwise. And
the ended call's record holds its last figures whichever side ended it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

from relay.client import CallClient, PcmSource
from relay.server.app import RECORDS, REGISTRY
from relay.server.call_records import RECORDING_EVENT

from ..conftest import LOOPBACK, base_url
from ..e2e.test_barge_in import tone
from ..support.offer import OfferPeer
from .support import until, unzip

KEY = "sk-test-server-key-0123456789"


async def request(server: Any, method: str, path: str, key: str = KEY,
                  headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, Any]:
    async with ClientSession() as http:
        async with http.request(method, base_url(server) + path,
                                headers={"Authorization": f"Bearer {key}", **(headers or {})},
                                **kwargs) as response:
            body = await (response.json() if response.content_type == "application/json"
                          else response.read())
            return response.status, body


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def call(server: Any, key: str) -> CallClient:
    client = CallClient(base_url(server), PcmSource(), ice_addresses=LOOPBACK,
                        api_key=key)
    await client.connect()
    await client.wait_for("session.created", timeout=10)
    return client


async def mint(server: Any, **body: Any) -> tuple[int, Any]:
    return await request(server, "POST", "/v1/realtime/client_secrets", json=body)


async def test_recording_off_records_nothing_unasked(relay_factory, tmp_path: Path) -> None:
    server = await relay_factory(record_dir=str(tmp_path))
    client = await call(server, "anything")
    try:
        await asyncio.sleep(0.3)
        assert "relay.recording.started" not in client.types()
        assert client.call_id is not None
        call_id = client.call_id
        assert server.app[REGISTRY].get(call_id).recorder is None
        assert await client.hangup() == 200
    finally:
        await client.close()
    status, body = await request(server, "GET", f"/v1/realtime/calls/{call_id}/content")
    assert status == 404 and body["error"]["code"] == "recording_not_found"
    assert names(tmp_path) == []


async def test_recording_asked_for_when_minting_the_client_secret(
        relay_factory, tmp_path: Path) -> None:
    server = await relay_factory(record_dir=str(tmp_path), relay_api_keys=(KEY,),
                                 auth="token")
    status, body = await mint(server, record="yes")
    assert status == 400 and body["error"]["param"] == "record"
    status, plain = await mint(server)
    status, recorded = await mint(server, record=True)
    assert status == 200
    unrecorded = await call(server, plain["value"])
    client = await call(server, recorded["value"])
    try:
        notice = await client.wait_for("relay.recording.started", timeout=5)
        assert notice["recording"]["content_url"] == (
            f"/v1/realtime/calls/{client.call_id}/content")
        assert "relay.recording.started" not in unrecorded.types()
        # A client secret's holder cannot ask on its own.
        status, body = await request(server, "POST", "/v1/realtime/calls?record=true",
                                     key=plain["value"], data="v=0",
                                     headers={"Content-Type": "application/sdp"})
        assert status == 400 and body["error"]["param"] == "record", body
        # A secret said on the channel is masked in the recording, as in the logs.
        client.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"my key is {KEY}"}]}})
        await client.wait_for("conversation.item.added", timeout=5)
        # The recording is the server key's to read, not the client's.
        status, _ = await request(server, "GET",
                                  f"/v1/realtime/calls/{client.call_id}/content",
                                  key=recorded["value"])
        assert status == 401
        assert await client.hangup() == 200
    finally:
        await client.close()
        await unrecorded.close()
    assert client.call_id is not None
    recordings = server.app[RECORDS].recordings
    await until(lambda: recordings.status(client.call_id or "") == "ready", 10)
    status, body = await request(server, "GET", f"/v1/realtime/calls/{client.call_id}/content")
    assert status == 200 and body[:2] == b"PK"
    files = unzip(body)
    assert KEY.encode() not in b"".join(files.values())
    assert b"my key is ***" in files["events.jsonl"]
    assert names(tmp_path) == [client.call_id]


async def test_recording_asked_for_by_a_server_key_call(relay_factory, tmp_path: Path) -> None:
    server = await relay_factory(record_dir=str(tmp_path), relay_api_keys=(KEY,),
                                 auth="token")
    async with OfferPeer() as peer:
        status, answer = await request(server, "POST", "/v1/realtime/calls?record=true",
                                       data=await peer.offer(),
                                       headers={"Content-Type": "application/sdp"})
        assert status == 201, answer
        await peer.accept(answer.decode())
        first = await peer.next_event()
        notice = await peer.next_event()
        assert (first["type"], notice["type"]) == ("session.created", RECORDING_EVENT)
        status, _ = await request(server, "POST",
                                  f"/v1/realtime/calls/{notice['call_id']}/hangup")
        assert status == 200
    status, body = await request(server, "POST", "/v1/realtime/calls?record=maybe",
                                 data="v=0", headers={"Content-Type": "application/sdp"})
    assert status == 400 and body["error"]["param"] == "record"


async def test_recording_final_figures_when_the_browser_hangs_up(
        relay_factory, tmp_path: Path) -> None:
    """The client closes its peer connection (a browser's pc.close()): the ended call's
    snapshot, recording and webhook hold the RTP figures of the whole call, not those of
    the last mid-call GET."""
    server = await relay_factory(record="all", record_dir=str(tmp_path))
    source = PcmSource()
    client = CallClient(base_url(server), source, ice_addresses=LOOPBACK)
    try:
        await client.connect()
        await client.wait_for("session.created", timeout=10)
        source.play(tone(3.0, 440))
        await asyncio.sleep(0.5)
        path = f"/v1/realtime/calls/{client.call_id}"
        status, early = await request(server, "GET", path)
        assert status == 200
        # 60 more packets (1.2 s) reach the relay before the browser hangs up, counted by
        # the relay itself: a starved machine only makes this take longer.
        heard = early["uplink"]["uplink_packets"]
        live = server.app[REGISTRY].get(client.call_id or "")
        await until(lambda: live.media.stats()["uplink_packets"] >= heard + 60, 15,
                    "more of the client's audio to reach the relay")
        await client.pc.close()
        await until(lambda: len(server.app[REGISTRY]) == 0, 15, "the call to end")
    finally:
        await client.close()
    status, final = await request(server, "GET", path)
    assert final["status"] == "closed", final
    assert early["recorded"] is True and final["recorded"] is True
    received = final["rtp"]["inbound"]["packets_received"]
    assert received >= early["rtp"]["inbound"]["packets_received"] + 50, (early, final)
    assert abs(received - final["uplink"]["uplink_packets"]) <= 5, final
    recordings = server.app[RECORDS].recordings
    await until(lambda: recordings.status(client.call_id or "") == "ready", 10)
    metadata = recordings.metadata(client.call_id or "")
    assert metadata["call"]["rtp"] == final["rtp"]
    assert metadata["ended"]["reason"].startswith("peer")
