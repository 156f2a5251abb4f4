"""The demo page's call survives its path being cut: headless Chromium (the page's own
code), and an nftables rule that drops every datagram of the call's ICE port both ways
(nothing more goes either way, as when a phone's network goes; neither side says
goodbye). The page sees no audio arrive, resumes the call on a
new peer connection with the call's resume token, and the conversation goes on: a typed
message after the cut is answered, and heard. A GPT-Live session resumes the same way,
through the Live API's resume."""

from __future__ import annotations

import time

from relay.server.app import REGISTRY

from ..conftest import base_url
from ..e2e.test_udp_ports import candidate_ports
from ..support.netlab import NetLab
from ..support.speech import needs_speech
from .test_demo_page import (
    AUDIBLE,
    FAST_VAD,
    chromium,
    open_page,
    wait_for_events,
    wait_for_state,
)
from .test_demo_page import silent_mic as silent_mic  # noqa: F401  (a fixture, used by name)
from .test_demo_page import speech_mic as speech_mic  # noqa: F401  (a fixture, used by name)


async def test_demo_page_resumes_its_call_when_the_path_is_cut(relay_factory, silent_mic,
                                                              tmp_path, netlab: NetLab) -> None:
    relay = await relay_factory(default_session=FAST_VAD, peer_timeout=20.0)
    async with chromium(tmp_path / "profile", silent_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        [call] = list(relay.app[REGISTRY])
        first_pc = call.pc
        [port] = set(candidate_ports(first_pc.localDescription.sdp))
        netlab.nft_here("cut", f"""table inet cut {{
            chain out {{ type filter hook output priority 0; udp sport {port} drop;
                         udp dport {port} drop; }}
            chain in {{ type filter hook input priority 0; udp sport {port} drop;
                        udp dport {port} drop; }}
        }}""")
        cut = time.monotonic()
        await wait_for_events(page, "relay.call.resumed", timeout=40)
        took = time.monotonic() - cut
        assert await page.evaluate("window.relayDemo.resumes") == 1
        assert call.pc is not first_pc and not call.closing
        await wait_for_state(page, "connected")
        # The call goes on: a typed message is answered, and the answer heard.
        await page.evaluate("window.relayDemo.maxRemoteLevel = 0")
        before = await page.evaluate("window.relayDemo.events.length")
        await page.fill("#message", "are you still there")
        await page.get_by_role("button", name="Send").click()
        await page.wait_for_function(
            "n => window.relayDemo.events.slice(n).some(e => e.type === "
            "'output_audio_buffer.stopped')", arg=before, timeout=20000)
        level = await page.evaluate("window.relayDemo.maxRemoteLevel")
        assert level > AUDIBLE, level
        resumed = await page.evaluate(
            "window.relayDemo.events.find(e => e.type === 'relay.call.resumed')")
        print(f"\ndemo page: path cut → relay.call.resumed in {took:.2f} s; {resumed}")
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []


@needs_speech
async def test_demo_page_resumes_a_gpt_live_session(relay_factory, speech_mic,
                                                    tmp_path) -> None:
    relay = await relay_factory(local_mode="assistant")
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("radio", name="GPT-Live").check()
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await wait_for_events(page, "session.started")
        [call] = list(relay.app[REGISTRY])
        first_pc = call.pc
        assert await page.evaluate("window.relayDemo.resume()") is True
        await page.wait_for_function(
            "window.relayDemo.events.some(e => e.type === 'info' && e.code === 'call_resumed')",
            timeout=20000)
        assert call.pc is not first_pc and not call.closing and call.peer_resumes == 1
        await wait_for_state(page, "connected")
        # The session goes on, on the new path: the mic's next turn is heard and answered.
        before = await page.evaluate("window.relayDemo.events.length")
        await page.evaluate("window.relayDemo.maxRemoteLevel = 0")
        await page.wait_for_function(
            "n => window.relayDemo.events.slice(n).some(e => e.type === "
            "'session.output_transcript.delta')", arg=before, timeout=40000)
        await page.wait_for_function("window.relayDemo.maxRemoteLevel > 0.05", timeout=10000)
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []
