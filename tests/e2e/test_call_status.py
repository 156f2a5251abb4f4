"""``GET /v1/realtime/calls/{id}`` over real sockets: one call, live and after it ended."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from relay.client import CallClient

from ..conftest import RelayFactory, base_url
from .test_barge_in import assert_no_errors, first_reply_playing, session


async def call_status(server: TestServer, call_id: str,
                      key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with ClientSession() as http:
        url = f"{base_url(server)}/v1/realtime/calls/{call_id}"
        async with http.get(url, headers=headers) as response:
            return response.status, await response.json()


async def test_call_status_live_and_after_the_call(relay: TestServer, make_client) -> None:
    client: CallClient = make_client(session=session())
    await client.connect()
    await first_reply_playing(client, 0.0)
    await client.wait_for("output_audio_buffer.stopped", timeout=20)
    assert client.call_id is not None
    status, live = await call_status(relay, client.call_id)
    assert status == 200
    assert live["id"] == client.call_id and live["status"] == "live"
    assert live["peer_connection"] == "connected" and live["close_reason"] is None
    timings = live["timings"]
    assert 0 < timings["upstream_connect_seconds"] < timings["connect_seconds"] < 20
    assert timings["ended_at"] is None
    assert live["audio_seconds"]["up"] >= 1.5 and live["audio_seconds"]["down"] >= 1.4
    rtp = live["rtp"]
    assert rtp["inbound"]["packets_received"] > 75  # 1.5 s of 20 ms packets, at least
    assert rtp["outbound"]["packets_sent"] > 70
    assert rtp["inbound"]["jitter_ms"] >= 0
    assert rtp["remote_inbound"]["round_trip_time_ms"] >= 0  # the client's RTCP reports
    assert live["uplink"]["uplink_packets"] > 75 and live["uplink"]["uplink_lost"] == 0
    assert live["events"]["from_upstream"]["response.done"] == 1
    assert live["events"]["to_client"]["output_audio_buffer.started"] == 1
    assert live["reply_latency"]["count"] == 1
    assert live["barge_ins"] == [] and live["last_error"] is None

    assert await client.hangup() == 200
    status, ended = await call_status(relay, client.call_id)
    assert status == 200
    assert ended["status"] == "closed" and ended["close_reason"] == "hangup"
    assert ended["timings"]["duration_seconds"] > 0
    assert ended["timings"]["ended_at"] > ended["timings"]["created_at"]
    # What was read as the call closed: at least what the live read saw.
    assert ended["rtp"]["inbound"]["packets_received"] >= rtp["inbound"]["packets_received"]
    assert ended["audio_seconds"]["down"] >= live["audio_seconds"]["down"]
    assert_no_errors(client)


async def test_call_status_unknown_call_is_404(relay: TestServer) -> None:
    status, body = await call_status(relay, "rtc_u1_nosuchcall")
    assert status == 404
    assert body["error"]["code"] == "call_id_not_found"


async def test_call_status_needs_the_server_key(relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server-secret",))
    assert (await call_status(server, "rtc_u1_x"))[0] == 401
    assert (await call_status(server, "rtc_u1_x", "sk-server-secret"))[0] == 404
