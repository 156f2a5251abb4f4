"""The demo page in a real Chromium: a call with a fake microphone, over loopback.

Chromium plays a WAV file as its microphone (looping it); the relay's embedded upstream
parrots each utterance back. The page records every data-channel event and the loudest
assistant audio it heard in ``window.relayDemo``, which these tests read.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, web

from relay.server.app import REGISTRY
from relay.upstream.local.workers import speech_missing

from ..conftest import base_url, live_calls, write_wav
from ..support.speech import ASK_WEATHER, SUNNY, espeak, needs_espeak, needs_speech

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium's audio capture runs at 48 kHz; a file at that rate needs no resampling.
CAPTURE_RATE = 48000
#: Silence after the utterance in the looped fake mic: the VAD's turn end (400 ms), the
#: reply (as long as the utterance) and a margin must fit before the loop speaks again.
TRAILING_SILENCE_S = 3.5
FAST_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 200}}}}
#: A peak level (0..1) well above an idle Opus stream and well below the parrot's speech.
AUDIBLE = 0.05
#: Set to a path to keep a screenshot of the demo page taken mid-call.
SCREENSHOT_ENV = "RELAY_DEMO_SCREENSHOT"
#: Set to a directory to keep the tests' artifacts there (else in pytest's tmp_path).
ARTIFACTS_ENV = "RELAY_TEST_ARTIFACTS"
#: The charts of the statistics panel (canvas[data-chart=NAME]).
CHARTS = ("rtt", "jitter", "loss", "level")


@pytest.fixture(autouse=True)
def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package)")


def upsample(pcm: bytes, factor: int) -> bytes:
    """24 kHz PCM16 to ``factor`` times the rate, by linear interpolation."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    t = np.arange(len(x) * factor) / factor
    return bytes(np.interp(t, np.arange(len(x)), x).round().astype("<i2").tobytes())


def mic_file(directory: Path, pcm: bytes, silence_s: float) -> Path:
    """A fake microphone's WAV in ``directory``: 24 kHz ``pcm`` at Chromium's capture
    rate, then ``silence_s`` of silence (Chromium loops the file)."""
    path = directory / "mic.wav"
    write_wav(path, upsample(pcm, CAPTURE_RATE // 24000) + bytes(2 * int(CAPTURE_RATE * silence_s)),
              CAPTURE_RATE)
    return path


@pytest.fixture(scope="session")
def speech_mic(speech: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: the speech fixture, then enough silence to end the turn."""
    return mic_file(tmp_path_factory.mktemp("mic"), speech, TRAILING_SILENCE_S)


@pytest.fixture(scope="session")
def silent_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake microphone that never speaks, for tests that must not start turns."""
    path = tmp_path_factory.mktemp("mic") / "silence.wav"
    write_wav(path, bytes(2 * CAPTURE_RATE), CAPTURE_RATE)
    return path


@asynccontextmanager
async def chromium(user_data: Path, mic: Path) -> AsyncIterator[Any]:
    """A headless Chromium whose microphone plays ``mic``; yields its browser context."""
    from playwright.async_api import async_playwright

    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
        "--allow-loopback-in-peer-connection",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-gpu",
        "--no-first-run",
    ]
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(user_data), executable_path=str(CHROMIUM), headless=True, args=args,
        )
        try:
            yield context
        finally:
            await context.close()


async def open_page(context: Any, url: str) -> tuple[Any, list[str]]:
    """Open ``url``; also return the list the page's uncaught errors are collected in."""
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    return page, errors


async def wait_for_events(page: Any, *types: str, timeout: float = 25) -> None:
    """Wait until the page has received an event of each of ``types``."""
    await page.wait_for_function(
        "types => types.every(t => window.relayDemo.events.some(e => e.type === t))",
        arg=list(types), timeout=timeout * 1000, polling=20,
    )


async def wait_for_state(page: Any, state: str, timeout: float = 15) -> None:
    await page.wait_for_function("s => window.relayDemo.state === s", arg=state,
                                 timeout=timeout * 1000)


async def event_types(page: Any) -> list[str]:
    types: list[str] = await page.evaluate("window.relayDemo.events.map(e => e.type)")
    return types


async def test_demo_page_call_is_parroted_back_and_heard(relay_factory, speech_mic,
                                                        tmp_path) -> None:
    relay = await relay_factory(default_session=FAST_VAD)
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        call_id = await page.evaluate("window.relayDemo.callId")
        assert re.fullmatch(r"rtc_\w+", call_id), call_id
        assert await page.locator("#call-id").text_content() == call_id

        await wait_for_events(page, "output_audio_buffer.started")
        await page.get_by_text("Assistant speaking").wait_for()
        if os.environ.get(SCREENSHOT_ENV):
            await page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
        await wait_for_events(page, "input_audio_buffer.speech_started", "response.done",
                              "output_audio_buffer.stopped")

        types = await event_types(page)
        assert types[0] == "session.created"
        assert "response.output_audio.delta" not in types
        assert "error" not in types
        assert types.index("output_audio_buffer.started") < types.index(
            "output_audio_buffer.stopped")
        levels = await page.evaluate(
            "({mic: window.relayDemo.maxMicLevel, remote: window.relayDemo.maxRemoteLevel})")
        assert levels["mic"] > AUDIBLE, levels
        assert levels["remote"] > AUDIBLE, levels  # the reply really played in the page
        [call] = list(relay.app[REGISTRY])
        assert call.stats()["downlink_paced"] > 50  # sent by the paced sender
        # The parrot's transcript reached the transcript panel.
        await page.locator("#transcript li.assistant",
                           has_text="You said something").first.wait_for()
        assert await page.locator("#log li").count() > 10
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert await page.evaluate("window.relayDemo.state") == "closed"
        assert errors == []


async def test_demo_page_call_through_one_shared_udp_port(relay_factory, speech_mic,
                                                         tmp_path) -> None:
    from ..e2e.test_udp_ports import candidate_ports, free_ports

    port = free_ports(1)
    relay = await relay_factory(default_session=FAST_VAD, udp_ports=(port, port))
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        [call] = list(relay.app[REGISTRY])
        assert set(candidate_ports(call.pc.localDescription.sdp)) == {port}
        await wait_for_events(page, "input_audio_buffer.speech_started", "response.done",
                              "output_audio_buffer.stopped")
        levels = await page.evaluate("({remote: window.relayDemo.maxRemoteLevel})")
        assert levels["remote"] > AUDIBLE, levels
        assert call.stats()["uplink_seconds_in"] > 1.0
        # What Chromium played came from the paced sender (see webrtc/internals).
        assert call.stats()["downlink_paced"] > 50
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []


async def test_demo_page_interrupt_cuts_the_reply_off(relay_factory, speech_mic,
                                                     tmp_path) -> None:
    relay = await relay_factory(default_session=FAST_VAD)
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        # The reply lasts as long as the utterance (about 1.9 s): time enough to cut it.
        await wait_for_events(page, "output_audio_buffer.started")
        await page.get_by_role("button", name="Interrupt").click()
        await wait_for_events(page, "output_audio_buffer.cleared", timeout=5)
        types = await event_types(page)
        cleared = types.index("output_audio_buffer.cleared")
        assert "output_audio_buffer.stopped" not in types[:cleared]
        await page.get_by_text("Assistant quiet").wait_for()
        await page.locator("#transcript li.assistant.cut").first.wait_for()
        # The page logged what it sent: response.cancel only while the response was still
        # being generated (the parrot generates faster than real time), then the clear.
        sent = await page.locator("#log li.out .type").all_text_contents()
        assert sent[-1] == "output_audio_buffer.clear", sent
        assert sent[:-1] in ([], ["response.cancel"]), sent
        assert await page.get_by_role("alert").is_hidden()
        await page.evaluate("window.relayDemo.hangup()")
        assert errors == []


async def test_demo_page_instructions_text_message_then_hang_up_ends_the_call(
        relay_factory, silent_mic, tmp_path) -> None:
    relay = await relay_factory()
    async with chromium(tmp_path / "profile", silent_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.locator("summary", has_text="Settings").click()
        await page.get_by_label("Instructions").fill("Answer in one word.")
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await page.wait_for_function(
            "() => window.relayDemo.events.some(e => e.type === 'session.updated'"
            " && e.session.instructions === 'Answer in one word.')", timeout=10_000)
        await page.get_by_label("Message to the assistant").fill("Hello there")
        await page.get_by_role("button", name="Send").click()
        await wait_for_events(page, "response.done", timeout=15)
        await page.locator("#transcript li.user", has_text="Hello there").wait_for()
        await page.locator("#transcript li.assistant").first.wait_for()
        call_id = await page.evaluate("window.relayDemo.callId")
        assert live_calls(relay) == 1

        await page.get_by_role("button", name="Hang up").click()
        await wait_for_state(page, "closed", timeout=5)
        assert await page.get_by_role("button", name="Start").is_enabled()
        assert live_calls(relay) == 0
        async with ClientSession() as http:
            url = f"{base_url(relay)}/v1/realtime/calls/{call_id}/hangup"
            async with http.post(url) as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "call_id_not_found"
        assert errors == []


async def test_demo_page_typed_question_gets_the_agents_tool_answer_spoken(
        relay_factory, silent_mic, tmp_path) -> None:
    relay = await relay_factory(agent="examples.weather_agent:agent")
    async with chromium(tmp_path / "profile", silent_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await page.get_by_label("Message to the assistant").fill(
            "what does get_weather say for Paris?")
        await page.get_by_role("button", name="Send").click()
        await page.locator("#transcript li.assistant", has_text=(
            "I used get_weather: The weather in example is mild and dry, 17 C.")).wait_for()
        await wait_for_events(page, "output_audio_buffer.stopped", timeout=15)
        # The answer really played in the page (its short tone, after the jitter buffer).
        await page.wait_for_function("a => window.relayDemo.maxRemoteLevel > a", arg=AUDIBLE,
                                     timeout=5000)
        assert "error" not in await event_types(page)
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []


@pytest.fixture(scope="session")
def weather_question_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone asks, in espeak's voice, for the weather, then stays quiet
    long enough for the tool call and the spoken answer."""
    return mic_file(tmp_path_factory.mktemp("mic"), espeak(ASK_WEATHER), 8.0)


@needs_speech
@needs_espeak
async def test_demo_page_spoken_question_gets_the_agents_tool_answer(
        relay_factory, weather_question_mic, tmp_path) -> None:
    # Offline end to end: the embedded assistant hears the question, calls the tool its
    # words name, the agent runs it in the relay, and the answer is spoken and shown.
    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"},
        "turn_detection": FAST_VAD["audio"]["input"]["turn_detection"]}}}
    relay = await relay_factory(agent="examples.weather_agent:agent", local_mode="assistant",
                                default_session=session)
    async with chromium(tmp_path / "profile", weather_question_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await page.locator("#transcript li.user", has_text="weather").first.wait_for(
            timeout=40_000)
        await page.locator("#transcript li.assistant", has_text=(
            "I used get_weather: The weather in example is mild and dry, 17 C.")
        ).first.wait_for(timeout=40_000)
        await page.wait_for_function("a => window.relayDemo.maxRemoteLevel > a", arg=AUDIBLE,
                                     timeout=15_000)
        assert "error" not in await event_types(page)
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []


async def test_demo_page_shows_the_relay_error_message(relay_factory, silent_mic,
                                                      tmp_path) -> None:
    relay = await relay_factory(relay_api_keys=("sk-right",))
    async with chromium(tmp_path / "profile", silent_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.locator("summary", has_text="Settings").click()
        await page.get_by_label("API key or client secret").fill("sk-wrong")
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "failed")
        alert = page.get_by_role("alert")
        await alert.wait_for()
        assert "Incorrect API key provided." in await alert.text_content()
        assert live_calls(relay) == 0
        assert errors == []


CROSS_ORIGIN_PAGE = """<!doctype html>
<title>another origin</title>
<script>
/* Create a call on the relay at `base` from this origin, read its id, and hang up. */
async function tryCall(base) {
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  const pc = new RTCPeerConnection();
  mic.getTracks().forEach(track => pc.addTrack(track, mic));
  pc.createDataChannel("oai-events");
  await pc.setLocalDescription(await pc.createOffer());
  const headers = {"Content-Type": "application/sdp", "Authorization": "Bearer sk-test"};
  const created = await fetch(base + "/v1/realtime/calls",
                              {method: "POST", headers, body: pc.localDescription.sdp});
  const location = created.headers.get("Location");
  const answer = await created.text();
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  const callId = location.split("/").pop();
  const hangup = () => fetch(`${base}/v1/realtime/calls/${callId}/hangup`,
                             {method: "POST", headers: {"Authorization": "Bearer sk-test"}});
  const first = await hangup();
  const second = await hangup();
  pc.close();
  mic.getTracks().forEach(track => track.stop());
  return {status: created.status, location, callId, hangup: first.status,
          again: second.status, againBody: await second.json()};
}
</script>
"""


async def test_cross_origin_page_creates_a_call_and_reads_its_location(
        relay_factory, aiohttp_server, silent_mic, tmp_path) -> None:
    # The key makes the relay check Authorization, so the preflight must let it through.
    other = web.Application()

    async def page_handler(request: web.Request) -> web.Response:
        return web.Response(text=CROSS_ORIGIN_PAGE, content_type="text/html")

    other.router.add_get("/", page_handler)
    origin = await aiohttp_server(other, host="127.0.0.1")
    # Token mode: the page's origin must be listed for it to read the relay's answers.
    relay = await relay_factory(relay_api_keys=("sk-test",),
                                cors_origins=(f"http://127.0.0.1:{origin.port}",))
    assert origin.port != relay.port  # another port is another origin

    async with chromium(tmp_path / "profile", silent_mic) as context:
        page, errors = await open_page(context, f"http://127.0.0.1:{origin.port}/")
        result = await page.evaluate("base => tryCall(base)", base_url(relay))
        assert result["status"] == 201
        assert result["location"] == f"/v1/realtime/calls/{result['callId']}"
        assert re.fullmatch(r"rtc_\w+", result["callId"])
        assert result["hangup"] == 200
        assert result["again"] == 404
        assert result["againBody"]["error"]["code"] == "call_id_not_found"
        assert live_calls(relay) == 0
        assert errors == []


def artifacts_dir(tmp_path: Path) -> Path:
    """Where a test keeps what a person may want to look at after the run."""
    directory = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def sunny_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone says a sentence, then stays quiet long enough for the
    assistant to hear it and answer aloud before the loop speaks again."""
    return mic_file(tmp_path_factory.mktemp("mic"), espeak(SUNNY), 7.0)


async def chart_points(page: Any) -> dict[str, int]:
    points: dict[str, int] = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('canvas[data-chart]')]"
        ".map(c => [c.dataset.chart, Number(c.dataset.points || 0)]))")
    return points


@needs_espeak
async def test_demo_page_charts_the_call_and_times_the_turn(relay_factory, sunny_mic,
                                                           tmp_path) -> None:
    # The assistant mode transcribes both sides; without the speech extra the parrot
    # answers (a transcript of its own, none of the user's).
    transcribes = speech_missing() is None
    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"},
        "turn_detection": FAST_VAD["audio"]["input"]["turn_detection"]}}}
    relay = await relay_factory(local_mode="assistant" if transcribes else "parrot",
                                default_session=session)
    async with chromium(tmp_path / "profile", sunny_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.set_viewport_size({"width": 1200, "height": 860})
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        call_id = await page.evaluate("window.relayDemo.callId")

        # The turn: its latency, from speech_stopped to the reply heard in the page.
        turn = page.locator("#turns li").last  # newest first: the last is the first turn
        await turn.wait_for(timeout=40_000)
        latency = int(await turn.get_attribute("data-latency-ms") or -1)
        assert 0 < latency < 5000, latency
        assert await turn.locator(".value").text_content() == f"{latency} ms"
        # The relay timed the same reply from speech_stopped to its first frame sent: the
        # page hears it later (network, jitter buffer), never sooner.
        async with ClientSession() as http:
            async with http.get(f"{base_url(relay)}/v1/realtime/calls/{call_id}") as response:
                reply = (await response.json())["reply_latency"]
        if reply["count"] == 1:
            assert latency > reply["sum_seconds"] * 1000 - 20, (latency, reply)

        # The conversation: the model's words, and the user's where the mode hears them.
        await page.locator("#transcript li.assistant", has_text="You said").first.wait_for(
            timeout=20_000)
        if transcribes:
            user = page.locator("#transcript li.user:not([data-placeholder])").first
            await user.wait_for(timeout=20_000)
            assert (await user.locator(".text").text_content() or "").strip()

        # Every chart has drawn the call's statistics, a point each half second.
        await page.wait_for_function(
            "charts => charts.every(name => Number(document.querySelector("
            "`canvas[data-chart=${name}]`).dataset.points) > 4)",
            arg=list(CHARTS), timeout=15_000)
        points = await chart_points(page)
        assert set(points) == set(CHARTS), points
        assert await page.locator("[data-readout=rtt]").text_content()

        screenshot = artifacts_dir(tmp_path) / "demo-page-call.png"
        await page.screenshot(path=str(screenshot))  # the viewport: the page is sized in vh
        print(f"demo page screenshot: {screenshot}")
        assert screenshot.stat().st_size > 10_000

        assert "error" not in await event_types(page)
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        # The charts stay up after the call, for a look; the sampling has stopped.
        after = await chart_points(page)
        await page.wait_for_timeout(1200)
        assert await chart_points(page) == after
        assert errors == []


@needs_speech
@needs_espeak
async def test_demo_page_captions_only_shows_a_live_transcript_without_a_voice(
        relay_factory, sunny_mic, tmp_path) -> None:
    relay = await relay_factory()
    async with chromium(tmp_path / "profile", sunny_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_text("Settings").click()
        await page.get_by_label("Captions only").check()
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await page.locator("#transcript li.user", has_text="sunny").first.wait_for(
            timeout=40_000)
        # What the page can do in a captions call: hang up, and nothing that talks.
        assert await page.locator("#interrupt").is_disabled()
        assert await page.locator("#message").is_disabled()
        call_id = await page.evaluate("window.relayDemo.callId")
        async with ClientSession() as http:
            async with http.get(f"{base_url(relay)}/v1/realtime/calls/{call_id}") as r:
                view = await r.json()
        types = await event_types(page)
        remote = await page.evaluate("window.relayDemo.maxRemoteLevel")
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []
    assert view["session_type"] == "transcription"
    assert types[0] == "session.created"
    assert "conversation.item.input_audio_transcription.completed" in types
    assert not [t for t in types if t.startswith(("response.", "output_audio_buffer."))]
    assert "error" not in types
    assert remote < AUDIBLE  # no voice played


@needs_speech
async def test_demo_page_holds_a_gpt_live_session(relay_factory, speech_mic, tmp_path) -> None:
    relay = await relay_factory(local_mode="assistant")
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        await page.get_by_role("radio", name="GPT-Live").check()
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        session_id = await page.evaluate("window.relayDemo.callId")
        assert re.fullmatch(r"rtc_\w+", session_id), session_id
        await wait_for_events(page, "session.started", "session.input_transcript.delta",
                              "session.output_transcript.delta", timeout=40)
        await page.get_by_text("Assistant speaking").wait_for()
        await page.locator("#transcript li.assistant", has_text="You said").first.wait_for()
        await page.locator("#transcript li.user").first.wait_for()
        await page.wait_for_function("window.relayDemo.maxRemoteLevel > 0.05", timeout=10000)
        if os.environ.get(SCREENSHOT_ENV):
            await page.wait_for_timeout(1500)  # the reply's words so far, on screen
            await page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
        types = await event_types(page)
        assert types[0] == "session.started"
        assert "session.output_audio.delta" not in types and "error" not in types
        assert await page.get_by_role("button", name="Interrupt").is_disabled()
        [call] = list(relay.app[REGISTRY])
        assert call.snapshot()["object"] == "live.session"
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert await page.evaluate("window.relayDemo.state") == "closed"
        assert live_calls(relay) == 0
        assert errors == []
