"""A client whose network changes mid-reply, in network namespaces: two links into the
relay's namespace (Wi-Fi and cellular), the first cut while the assistant is talking. The
client resumes the call on the second with a new peer connection and the call's resume
token; the reply plays on, the conversation is intact (a later turn refers to the first
turn's item), and the call kept its one upstream session. The gaps are printed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.server.app import REGISTRY, create_app

from ..conftest import loopback_settings
from ..support.netlab import NetLab
from ..support.recording import record_upstream
from ..support.roaming_client import CODE_WORD

pytestmark = pytest.mark.slow

RELAY_IP = "10.201.40.1"
WIFI_HERE, WIFI_CLIENT = "10.201.41.1", "10.201.41.2"
CELL_HERE, CELL_CLIENT = "10.201.42.1", "10.201.42.2"


async def test_roaming_client_resumes_on_its_second_network_mid_reply(
        netlab: NetLab, aiohttp_server: Any, tmp_path: Path) -> None:
    client_ns = netlab.namespace("client", WIFI_HERE, WIFI_CLIENT)
    netlab.link(client_ns, CELL_HERE, CELL_CLIENT, metric=100)
    netlab.add_address(RELAY_IP)
    app: web.Application = create_app(loopback_settings(
        ice_addresses=(RELAY_IP,), local_mode="assistant", peer_timeout=3.0,
        resume_grace=20.0))
    recorded = record_upstream(app)
    relay: TestServer = await aiohttp_server(app, host=RELAY_IP)
    log = tmp_path / "client.log"
    client = netlab.python(client_ns, "-m", "tests.support.roaming_client",
                           f"http://{RELAY_IP}:{relay.port}", WIFI_CLIENT, CELL_CLIENT,
                           client_ns.wire, log=log)
    status = await asyncio.to_thread(client.wait, 120)
    print(log.read_text()[-3000:])
    assert status == 0
    result = json.loads(log.read_text().strip().splitlines()[-1])
    assert CODE_WORD in result["first_reply"]
    # The conversation is intact: a reply to the first turn's item alone.
    assert CODE_WORD in result["referred_back"]
    resumed = result["resumed_event"]
    assert resumed["via"] == "new_peer_connection" and resumed["resumes"] == 1
    # One upstream session all along.
    [connector] = recorded
    assert len(connector.sockets) == 1
    snapshot = await app[REGISTRY].describe(result["call_id"])
    assert snapshot["close_reason"] == "hangup"
    continuity = snapshot["continuity"]
    assert continuity["peer_resumes"] == 1 and continuity["upstream_restores"] == 0
    # The relay held the reply while the path was gone, instead of playing it into it.
    assert continuity["audio_held_seconds"] > 0
    assert result["downlink_gap"] is not None and result["downlink_gap"] < 5.0
    # What was lost: reply audio the relay sent into the dead path before the resume.
    sent = snapshot["audio_seconds"]["down"]
    heard = result["audio_frames_heard"] * 0.020
    print("roaming figures:", json.dumps({
        **{k: result[k] for k in ("detect_seconds", "resume_seconds", "cut_to_resumed_event",
                                  "downlink_gap")},
        "uplink_path_gap": continuity["last_resume"].get("path_gap_seconds"),
        "held_while_gone_s": continuity["audio_held_seconds"],
        "reply_audio_sent_s": sent, "reply_audio_heard_s": round(heard, 3),
        "resumed_event": resumed}))
