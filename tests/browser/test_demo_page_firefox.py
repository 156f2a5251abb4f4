"""The demo page in Firefox ESR: another WebRTC stack than Chromium's and aiortc's (its
own ICE, NSS for DTLS, its SDP), as real users bring one. Driven over WebDriver BiDi
(tests/support/firefox.py), its microphone Firefox's fake tone."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import ClientSession

from ..conftest import RelayFactory, base_url
from ..support.firefox import Firefox, lab_interface, needs_firefox
from ..support.netlab import NetLab

pytestmark = [pytest.mark.browser, needs_firefox]

#: No turn detection: the fake microphone's endless tone would be one endless turn.
NO_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


async def test_demo_page_firefox_call_carries_audio_both_ways(
        relay_factory: RelayFactory, netlab: NetLab, tmp_path) -> None:
    address = lab_interface(netlab)
    relay = await relay_factory(default_session=NO_VAD, ice_addresses=(address,))
    async with Firefox(tmp_path / "firefox") as firefox:
        await firefox.goto(base_url(relay))
        await firefox.evaluate("document.getElementById('start').click()",
                               user_activation=True)
        await firefox.wait_for("window.relayDemo.state === 'connected'")
        call_id = await firefox.evaluate("window.relayDemo.callId")
        assert re.fullmatch(r"rtc_\w+", call_id), call_id
        await firefox.wait_for("!document.getElementById('send').disabled")
        # A typed message: the parrot answers it aloud (a beep: it has heard no turn).
        await firefox.evaluate(
            "(document.getElementById('message').value = 'Hello from Firefox',"
            " document.getElementById('message-form').requestSubmit(), true)")
        await firefox.wait_for("window.relayDemo.events.some("
                               "e => e.type === 'output_audio_buffer.stopped')", timeout=30)
        for _ in range(100):  # Firefox refreshes its RTP statistics now and then
            rtp = await firefox.rtp_audio()
            if rtp["packetsReceived"] > 25 and rtp["packetsSent"] > 25:
                break
            await asyncio.sleep(0.1)
        async with ClientSession() as http:
            async with http.get(f"{base_url(relay)}/v1/realtime/calls/{call_id}") as r:
                view = await r.json()
        types = await firefox.evaluate("window.relayDemo.events.map(e => e.type)")
        assert await firefox.evaluate("window.relayDemo.hangup()") == 200
        assert await firefox.evaluate("window.relayDemo.state") == "closed"
        errors = list(firefox.errors)
    assert types[0] == "session.created" and "error" not in types
    assert types.index("output_audio_buffer.started") < types.index(
        "output_audio_buffer.stopped")
    # The reply reached Firefox and was decoded to sound (not silence)...
    assert rtp["packetsReceived"] > 25 and rtp["totalAudioEnergy"] > 0.01, rtp
    # ...and Firefox's Opus reached the relay and was decoded: its microphone was heard.
    assert rtp["packetsSent"] > 25, rtp
    assert view["audio_seconds"]["up"] > 0.5 and view["uplink"]["uplink_packets"] > 25
    assert view["peer_connection"] == "connected"
    assert errors == []
