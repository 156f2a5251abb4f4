"""Behind a NAT, as in Docker or Kubernetes: the relay's one UDP port is published on a
public address (nftables DNAT, as Docker's ``-p`` does), the relay announces that address,
and a client that can reach nothing else completes a spoken turn."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.client import read_wav
from relay.server.app import create_app

from ..conftest import FIXTURES, loopback_settings
from ..support.netlab import NetLab
from .test_turn import _answer_sdp, spoken_seconds, voiced_seconds

LAB_SIDE, CLIENT_IP = "10.201.1.1", "10.201.1.2"
#: The relay's own address (the container's), and the public one (the host's).
PRIVATE_IP, PUBLIC_IP = "10.201.0.1", "10.201.5.5"
PORT = 23478


async def test_nat_published_single_port_with_announced_address(
        netlab: NetLab, aiohttp_server: Any, tmp_path: Path) -> None:
    client = netlab.namespace("client", LAB_SIDE, CLIENT_IP)
    netlab.add_address(PRIVATE_IP)
    # The "host" publishes the relay's port on its public address.
    netlab.nft_here("labnat", f"""table inet labnat {{
        chain pre {{ type nat hook prerouting priority -100;
            ip daddr {PUBLIC_IP} udp dport {PORT} dnat ip to {PRIVATE_IP}; }}
    }}""")
    # The client reaches the relay's private address by no UDP at all.
    client.nft(f"""table inet lab {{
        chain out {{ type filter hook output priority 0;
            ip daddr {PRIVATE_IP} meta l4proto udp counter drop; }}
    }}""")
    app: web.Application = create_app(loopback_settings(
        ice_addresses=(PRIVATE_IP,), udp_ports=(PORT, PORT), ice_public_addresses=(PUBLIC_IP,)))
    relay: TestServer = await aiohttp_server(app, host=LAB_SIDE)
    output = tmp_path / "reply.wav"
    log = tmp_path / "client.log"
    process = netlab.python(
        client, "-m", "relay", "call", "--url", f"http://{LAB_SIDE}:{relay.port}",
        "--input", str(FIXTURES / "hello.wav"), "--output", str(output),
        "--ice-address", CLIENT_IP, "--timeout", "40", log=log)
    answer = await _answer_sdp(relay, process)
    status = await asyncio.to_thread(process.wait, 90)
    print(log.read_text()[-2000:])
    assert status == 0
    # The answer offers the public address, on the published port, beside the private one.
    assert re.search(rf"^a=candidate:\S+ 1 udp \d+ {PUBLIC_IP} {PORT} typ srflx "
                     rf"raddr {PRIVATE_IP} rport {PORT}", answer, flags=re.M), answer
    assert voiced_seconds(read_wav(output)) > 0.8 * spoken_seconds()
