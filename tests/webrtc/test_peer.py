"""Peer connections: ICE configuration, answering offers, and the peer's message size limit.

The offers are real aiortc offers; answering one gathers host candidates on loopback only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from relay.errors import InvalidRequest
from relay.webrtc.internals import ice_connection
from relay.webrtc.peer import (
    EVENTS_LABEL,
    answer,
    create_peer,
    remote_max_message_size,
    restrict_host_addresses,
)

from ..conftest import LOOPBACK


def candidates(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:.*$", sdp, flags=re.M)


def stun_server(pc: RTCPeerConnection) -> object:
    gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
    return ice_connection(gatherer).stun_server


@pytest.fixture
async def peers() -> AsyncIterator[list[RTCPeerConnection]]:
    """Peers the test makes, closed at its end."""
    made: list[RTCPeerConnection] = []
    yield made
    for pc in made:
        await pc.close()


async def offer(peers: list[RTCPeerConnection], *, audio: bool = True,
                channel: bool = True) -> str:
    """A real offer from a fresh client peer, its candidates on loopback."""
    pc = create_peer(())
    peers.append(pc)
    if audio:
        pc.addTransceiver("audio")
    if channel:
        pc.createDataChannel(EVENTS_LABEL)
    description = await pc.createOffer()
    restrict_host_addresses(pc, LOOPBACK)
    await pc.setLocalDescription(description)
    sdp: str = pc.localDescription.sdp
    return sdp


def relay_peer(peers: list[RTCPeerConnection]) -> RTCPeerConnection:
    pc = create_peer(())
    peers.append(pc)
    return pc


async def test_create_peer_without_ice_servers_uses_no_stun(
        peers: list[RTCPeerConnection]) -> None:
    # aiortc falls back to a public STUN server when none are configured at all.
    pc = relay_peer(peers)
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    assert stun_server(pc) is None
    assert "srflx" not in pc.localDescription.sdp


async def test_create_peer_uses_the_ice_servers_given(peers: list[RTCPeerConnection]) -> None:
    pc = create_peer(["stun:192.0.2.1:3479"])  # a documentation address; nothing is sent
    peers.append(pc)
    pc.addTransceiver("audio")
    assert stun_server(pc) == ("192.0.2.1", 3479)


async def test_answer_advertises_candidates_only_on_the_pinned_address(
        peers: list[RTCPeerConnection]) -> None:
    sdp, channel = await answer(relay_peer(peers), await offer(peers), addresses=LOOPBACK)
    assert sdp.startswith("v=0") and "m=audio" in sdp and "m=application" in sdp
    found = candidates(sdp)
    assert found and all(" 127.0.0.1 " in line and " typ host" in line for line in found)
    assert channel is None


async def test_answer_opens_the_negotiated_channel_for_dcid(
        peers: list[RTCPeerConnection]) -> None:
    _, channel = await answer(relay_peer(peers), await offer(peers), addresses=LOOPBACK,
                              negotiated_channel_id=3)
    assert channel is not None
    assert channel.label == EVENTS_LABEL and channel.negotiated and channel.id == 3


async def test_answer_rejects_an_offer_without_audio(peers: list[RTCPeerConnection]) -> None:
    pc = relay_peer(peers)
    with pytest.raises(InvalidRequest) as caught:
        await answer(pc, await offer(peers, audio=False), addresses=LOOPBACK)
    assert caught.value.code == "invalid_offer" and caught.value.param == "sdp"
    assert caught.value.status == 400
    assert pc.remoteDescription is None


#: A session-level DTLS fingerprint: offers without one never reach aiortc (offer_check).
FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"


@pytest.mark.parametrize("sdp", [
    "v=0\r\n" + FINGERPRINT + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\ngarbage\r\n",
    "m=audio",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + FINGERPRINT
    + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
])
async def test_answer_rejects_sdp_aiortc_cannot_apply(
        peers: list[RTCPeerConnection], sdp: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await answer(relay_peer(peers), sdp, addresses=LOOPBACK)
    assert caught.value.code == "invalid_offer" and caught.value.param == "sdp"
    assert caught.value.message.startswith(("The SDP offer could not be applied",
                                            "The body is not an SDP offer"))
    assert len(caught.value.message) < 300


async def test_answer_dcid_without_a_data_channel_section_names_dcid(
        peers: list[RTCPeerConnection]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await answer(relay_peer(peers), await offer(peers, channel=False), addresses=LOOPBACK,
                     negotiated_channel_id=0)
    assert caught.value.code == "invalid_offer" and caught.value.param == "dcid"


async def test_answer_audio_only_offer_without_dcid_is_answered(
        peers: list[RTCPeerConnection]) -> None:
    sdp, channel = await answer(relay_peer(peers), await offer(peers, channel=False),
                                addresses=LOOPBACK)
    assert "m=audio" in sdp and "m=application" not in sdp and channel is None


async def with_max_message_size(peers: list[RTCPeerConnection], line: str | None) -> int:
    """The relay side's reading of an offer whose max-message-size line is ``line``."""
    sdp = await offer(peers)
    assert "a=max-message-size:" in sdp  # aiortc names one; the test replaces it
    kept = [x for x in sdp.split("\r\n") if not x.startswith("a=max-message-size:")]
    if line is not None:
        kept.insert(kept.index(next(x for x in kept if x.startswith("a=sctp-port:"))), line)
    pc = relay_peer(peers)
    await pc.setRemoteDescription(RTCSessionDescription(sdp="\r\n".join(kept), type="offer"))
    return remote_max_message_size(pc, default=12345)


async def test_remote_max_message_size_reads_the_offer(
        peers: list[RTCPeerConnection]) -> None:
    assert await with_max_message_size(peers, "a=max-message-size:262144") == 262144


async def test_remote_max_message_size_absent_is_the_default(
        peers: list[RTCPeerConnection]) -> None:
    assert await with_max_message_size(peers, None) == 12345


async def test_remote_max_message_size_zero_means_any_size(
        peers: list[RTCPeerConnection]) -> None:
    assert await with_max_message_size(peers, "a=max-message-size:0") == 0


async def test_remote_max_message_size_without_a_remote_description_is_the_default(
        peers: list[RTCPeerConnection]) -> None:
    assert remote_max_message_size(relay_peer(peers), default=12345) == 12345
