"""ICE server URLs: credentials in TURN URLs, transports, masking, and what aiortc can use."""

import re

import pytest
from aiortc import RTCPeerConnection

from relay.webrtc.ice_servers import (
    IceServer,
    ice_server_url,
    ice_servers_problem,
    mask_ice_server,
    parse_ice_server,
)
from relay.webrtc.internals import ice_connection, ice_gatherers
from relay.webrtc.peer import create_peer


@pytest.mark.parametrize(("text", "server"), [
    ("stun:stun.example.test", IceServer("stun:stun.example.test")),
    ("stun:10.0.0.1:3478", IceServer("stun:10.0.0.1:3478")),
    ("turn:alice:s3cret@turn.example.test:3478",
     IceServer("turn:turn.example.test:3478", "alice", "s3cret")),
    ("turn:alice:s3cret@turn.example.test?transport=tcp",
     IceServer("turn:turn.example.test?transport=tcp", "alice", "s3cret")),
    ("turns:alice:s3cret@turn.example.test:443",
     IceServer("turns:turn.example.test:443", "alice", "s3cret")),
    ("turn://1700000000%3Aalice:a%40b%2Cc@10.0.0.2:3478?transport=udp",
     IceServer("turn:10.0.0.2:3478?transport=udp", "1700000000:alice", "a@b,c")),
    ("turn:turn.example.test", IceServer("turn:turn.example.test")),
])
def test_ice_servers_parse_credentials_out_of_the_url(text: str, server: IceServer) -> None:
    assert parse_ice_server(text) == server


@pytest.mark.parametrize(("text", "problem"), [
    ("http://x", "must be stun:HOST[:PORT] or turn:/turns:"),
    ("turn:[::1]:3478", "must be stun:HOST"),
    ("stun:u:p@host", "STUN takes neither"),
    ("stun:host?transport=udp", "STUN takes neither"),
    ("turn:u:p@host?transport=sctp", "neither udp nor tcp"),
    ("turns:u:p@host?transport=udp", "TLS runs over TCP"),
    ("turn:u:p@host:70000", "port out of range in turn:u:***@host:70000"),
])
def test_ice_servers_refuse_what_aiortc_cannot_use(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_ice_server(text)


def test_ice_servers_one_stun_and_one_turn_at_most() -> None:
    assert ice_servers_problem(("stun:a", "turn:u:p@b?transport=tcp")) is None
    assert "more than one stun:" in (ice_servers_problem(("stun:a", "stun:b")) or "")
    assert "more than one turn:" in (ice_servers_problem(("turn:u:p@a", "turns:u:p@a")) or "")


def test_ice_servers_mask_hides_only_the_credential() -> None:
    assert mask_ice_server("turn:alice:s3cret@host:3478?transport=tcp") == (
        "turn:alice:***@host:3478?transport=tcp")
    assert mask_ice_server("turns://a:b@host") == "turns://a:***@host"
    assert mask_ice_server("stun:host:3478") == "stun:host:3478"


def test_ice_servers_url_round_trips_awkward_credentials() -> None:
    url = ice_server_url("turn", "10.0.0.2", 3478, username="a:b@c", credential="x/y:z%",
                         transport="tcp")
    assert parse_ice_server(url) == IceServer("turn:10.0.0.2:3478?transport=tcp", "a:b@c",
                                              "x/y:z%")


async def test_ice_servers_reach_aioice_with_credentials() -> None:
    pc: RTCPeerConnection = create_peer(("stun:10.0.0.1:3479",
                                         "turns:alice:s3cret@turn.example.test:5349"))
    pc.addTransceiver("audio")
    try:
        [gatherer] = ice_gatherers(pc)
        connection = ice_connection(gatherer)
        assert connection.stun_server == ("10.0.0.1", 3479)
        assert connection.turn_server == ("turn.example.test", 5349)
        assert (connection.turn_username, connection.turn_password) == ("alice", "s3cret")
        assert (connection.turn_ssl, connection.turn_transport) == (True, "tcp")
    finally:
        await pc.close()
