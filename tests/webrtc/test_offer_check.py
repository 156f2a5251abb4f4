"""Offers aiortc would trip on, refused before it sees them (relay/webrtc/offer_check.py)."""

from __future__ import annotations

import json

import pytest

from relay.errors import InvalidRequest
from relay.webrtc.offer_check import check_offer

FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0"
APPLICATION = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1"


def sdp(*lines: str) -> str:
    return "\r\n".join(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *lines]) + "\r\n"


@pytest.mark.parametrize("offer", [
    sdp(FINGERPRINT, AUDIO, APPLICATION),
    sdp(AUDIO, FINGERPRINT, APPLICATION, FINGERPRINT),
    sdp("a=group:BUNDLE 0 1", FINGERPRINT, AUDIO, APPLICATION),
    sdp("a=group:BUNDLE", FINGERPRINT, AUDIO),
    "\ufeff  " + sdp(FINGERPRINT, AUDIO),
])
def test_offer_check_takes_what_aiortc_can_answer(offer: str) -> None:
    check_offer(offer)


@pytest.mark.parametrize(("offer", "words"), [
    (json.dumps({"sdp": sdp(FINGERPRINT, AUDIO)}), "not an SDP offer"),
    ("", "not an SDP offer"),
    ("m=audio", "not an SDP offer"),
    (sdp(FINGERPRINT, APPLICATION), "no audio"),
    (sdp(FINGERPRINT, AUDIO, APPLICATION, APPLICATION), "2 application"),
    (sdp(AUDIO, APPLICATION), "no a=fingerprint"),
    (sdp(AUDIO, FINGERPRINT, APPLICATION), "application section has no a=fingerprint"),
    (sdp("a=fingerprint:sha-256", AUDIO), "no a=fingerprint"),
    (sdp("a=group:BUNDLE 7 0 1", FINGERPRINT, AUDIO, APPLICATION), "BUNDLE group starts"),
    # An application section whose m= line was lost: its a=mid:1 now ends the audio's.
    (sdp("a=group:BUNDLE 0 1", FINGERPRINT, AUDIO, "a=mid:1"), "BUNDLE group starts"),
])
def test_offer_check_refuses_what_aiortc_trips_on(offer: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_offer(offer)
    assert (caught.value.code, caught.value.param) == ("invalid_offer", "sdp")
    assert words in caught.value.message and caught.value.status == 400
