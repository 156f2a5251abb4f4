"""TURN with credentials, against coturn, in network namespaces: a client whose direct path
to the relay is blocked still talks and hears, through TURN over UDP, TCP and TLS.

The client (``relay call``) runs in its own namespace, coturn in another; the relay runs in
the test's namespace, which routes between them. nftables rules in the namespaces block
what each case says is blocked; the relay's answer must carry its own relayed candidate.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.client import read_wav
from relay.server.app import REGISTRY, create_app
from relay.webrtc.ice_servers import ice_server_url

from ..conftest import FIXTURES, loopback_settings
from ..support.certs import make_certificates
from ..support.netlab import Namespace, NetLab, wait_for_tcp
from .test_call_e2e import rms

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("turnserver") is None,
                       reason="needs coturn's turnserver (scripts/setup --test installs it)"),
]

RELAY_IP, CLIENT_IP = "10.201.1.1", "10.201.1.2"
LAB_TURN_SIDE, TURN_IP = "10.201.2.1", "10.201.2.2"
#: Credentials with characters a URL must escape.
USERNAME, PASSWORD = "relay@lab", "p@ss/w:rd%"
REALM = "relay.test"
TURN_PORT, TURNS_PORT = 3478, 5349


class TurnLab:
    """A client namespace and a coturn namespace around the test's own."""

    def __init__(self, lab: NetLab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.client = lab.namespace("client", RELAY_IP, CLIENT_IP)
        self.turn = lab.namespace("turn", LAB_TURN_SIDE, TURN_IP)
        self.ca, cert, key = make_certificates(tmp, TURN_IP)
        lab.start(self.turn, "turnserver", "-n", "--no-cli", "--log-file=stdout",
                  "--simple-log", f"--listening-ip={TURN_IP}", f"--relay-ip={TURN_IP}",
                  f"--listening-port={TURN_PORT}", f"--tls-listening-port={TURNS_PORT}",
                  "--min-port=40000", "--max-port=40200", "--lt-cred-mech", "--fingerprint",
                  f"--user={USERNAME}:{PASSWORD}", f"--realm={REALM}", "--no-dtls",
                  f"--cert={cert}", f"--pkey={key}", f"--pidfile={tmp / 'turn.pid'}",
                  log=tmp / "turnserver.log")

    def url(self, transport: str) -> str:
        """The TURN URL for ``udp``, ``tcp`` or ``tls``, credentials included."""
        if transport == "tls":
            return ice_server_url("turns", TURN_IP, TURNS_PORT, username=USERNAME,
                                  credential=PASSWORD)
        return ice_server_url("turn", TURN_IP, TURN_PORT, username=USERNAME,
                              credential=PASSWORD, transport=transport)

    async def ready(self) -> None:
        await wait_for_tcp(TURN_IP, TURN_PORT)
        await wait_for_tcp(TURN_IP, TURNS_PORT)

    def block(self, ns: Namespace | None, rule: str) -> None:
        """Drop what ``rule`` matches, both ways, in ``ns`` (None: the relay's own)."""
        ruleset = f"""table inet lab {{
            chain out {{ type filter hook output priority 0; {rule.format(dir="d")} counter drop; }}
            chain in {{ type filter hook input priority 0; {rule.format(dir="s")} counter drop; }}
        }}"""
        if ns is None:
            self.lab.nft_here("lab", ruleset)
        else:
            ns.nft(ruleset)

    async def call(self, relay: TestServer, *, client_servers: tuple[str, ...] = (),
                   ) -> tuple[int, bytes, str]:
        """Run ``relay call`` in the client namespace; (exit status, reply, answer SDP)."""
        output = self.tmp / "reply.wav"
        argv = ["-m", "relay", "call", "--url", f"http://{RELAY_IP}:{relay.port}",
                "--input", str(FIXTURES / "hello.wav"), "--output", str(output),
                "--ice-address", CLIENT_IP, "--timeout", "40"]
        for url in client_servers:
            argv += ["--ice-server", url]
        log = self.tmp / "client.log"
        process = self.lab.python(self.client, *argv, log=log)
        answer = await _answer_sdp(relay, process)
        status = await asyncio.to_thread(process.wait, 90)
        reply = read_wav(output) if output.exists() else b""
        print(log.read_text()[-3000:])
        print(re.findall(r"a=candidate.*", answer))
        print((self.tmp / "turnserver.log").read_text()[-2000:])
        return status, reply, answer


async def _answer_sdp(relay: TestServer, process: Any) -> str:
    """The SDP answer of the relay's call, once it exists (bounded by 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        for call in relay.app[REGISTRY]:
            description = call.pc.localDescription
            if description is not None:
                return str(description.sdp)
        await asyncio.sleep(0.05)
    return ""


@pytest.fixture
async def turn_lab(netlab: NetLab, tmp_path: Path) -> TurnLab:
    lab = TurnLab(netlab, tmp_path)
    await lab.ready()
    return lab


async def start_relay(aiohttp_server: Any, **changes: Any) -> TestServer:
    settings = loopback_settings(ice_addresses=(RELAY_IP,), **changes)
    app: web.Application = create_app(settings)
    server: TestServer = await aiohttp_server(app, host=RELAY_IP)
    return server


def voiced_seconds(pcm: bytes) -> float:
    return sum(1 for i in range(0, len(pcm), 960) if rms(pcm[i:i + 960]) > 300) * 0.02


def spoken_seconds() -> float:
    return voiced_seconds(read_wav(FIXTURES / "hello.wav"))


def relay_candidates(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:.* typ relay.*$", sdp, flags=re.M)


def assert_turn_both_ways(status: int, reply: bytes, answer: str) -> None:
    assert status == 0
    # The relay allocated on coturn: its answer offers a relayed candidate there.
    assert any(f" {TURN_IP} " in line for line in relay_candidates(answer)), answer
    # The model heard the utterance (it parrots it back) and the client heard the reply.
    assert voiced_seconds(reply) > 0.8 * spoken_seconds(), voiced_seconds(reply)
    assert np.frombuffer(reply, dtype=np.int16).size > 0


async def test_turn_udp_carries_a_call_whose_direct_path_is_blocked(turn_lab: TurnLab,
                                                                    aiohttp_server) -> None:
    # No UDP between the client and the relay's own address, either way.
    turn_lab.block(turn_lab.client, f"ip {{dir}}addr {RELAY_IP} meta l4proto udp")
    relay = await start_relay(aiohttp_server, ice_servers=(turn_lab.url("udp"),))
    assert_turn_both_ways(*await turn_lab.call(relay))
    # The direct path was tried, and the firewall dropped it.
    assert _dropped(turn_lab.client) > 0


async def test_turn_tcp_carries_a_call_when_no_udp_passes(turn_lab: TurnLab,
                                                          aiohttp_server) -> None:
    # Neither the client's network nor the relay's lets any UDP through: both reach
    # coturn over TCP, and the media crosses between two allocations inside coturn.
    turn_lab.block(turn_lab.client, "meta l4proto udp")
    turn_lab.block(None, "meta l4proto udp ip {dir}addr != 127.0.0.0/8")
    relay = await start_relay(aiohttp_server, ice_servers=(turn_lab.url("tcp"),))
    assert_turn_both_ways(*await turn_lab.call(relay, client_servers=(turn_lab.url("tcp"),)))


async def test_turn_tls_carries_a_call_when_no_udp_passes(turn_lab: TurnLab, aiohttp_server,
                                                          monkeypatch) -> None:
    # As over TCP, through TLS; coturn's certificate is signed by a CA made for the test,
    # which the relay (and the client) trust through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(turn_lab.ca))
    turn_lab.block(turn_lab.client, "meta l4proto udp")
    turn_lab.block(None, "meta l4proto udp ip {dir}addr != 127.0.0.0/8")
    relay = await start_relay(aiohttp_server, ice_servers=(turn_lab.url("tls"),))
    assert_turn_both_ways(*await turn_lab.call(relay, client_servers=(turn_lab.url("tls"),)))


def _dropped(ns: Namespace) -> int:
    listing = subprocess.run(ns.enter("nft", "list", "table", "inet", "lab"),
                             capture_output=True, text=True, check=True).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", listing))
