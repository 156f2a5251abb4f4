"""ICE through the relay: only configured addresses advertised, offers without candidates.

(That a peer without ICE servers uses no STUN is tested in tests/webrtc/test_peer.py.)
"""

from __future__ import annotations

import re

from aiohttp import ClientSession

from relay.client import CallClient, PcmSource
from relay.webrtc.peer import create_peer, restrict_host_addresses

from ..conftest import LOOPBACK, base_url


def candidates(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:.*$", sdp, flags=re.M)


async def test_ice_answer_advertises_only_configured_addresses(relay) -> None:
    pc = create_peer(())
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    offer = await pc.createOffer()
    restrict_host_addresses(pc, LOOPBACK)
    await pc.setLocalDescription(offer)
    async with ClientSession() as http:
        async with http.post(f"{base_url(relay)}/v1/realtime/calls",
                             data=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 201
            assert response.headers["Location"].startswith("/v1/realtime/calls/rtc_u1_")
            answer = await response.text()
    found = candidates(answer)
    assert found and all(" 127.0.0.1 " in line and " typ host" in line for line in found)
    assert "srflx" not in answer
    await pc.close()


async def test_ice_offer_without_candidates_connects_peer_reflexively(relay) -> None:
    """agents-js posts the offer before gathering: the relay learns the client's address
    from its connectivity checks."""
    def strip_candidates(sdp: str) -> str:
        kept = [line for line in sdp.split("\r\n")
                if not line.startswith(("a=candidate", "a=end-of-candidates"))]
        stripped = "\r\n".join(kept)
        assert not candidates(stripped)
        return stripped

    client = CallClient(base_url(relay), PcmSource(), ice_addresses=LOOPBACK,
                        edit_offer=strip_candidates)
    try:
        await client.connect(timeout=20)
        await client.wait_for("session.created")
        assert client.pc.connectionState == "connected"
    finally:
        await client.close()
