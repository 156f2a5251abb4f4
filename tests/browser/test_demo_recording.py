"""The demo page on a recorded call, in a real Chromium: the page shows that the call is
recorded, and the recording holds what the browser said and heard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession

from relay.server.app import RECORDS

from ..conftest import base_url
from ..recording.support import read_audio, until, unzip
from .test_demo_page import (
    FAST_VAD,
    SCREENSHOT_ENV,
    chromium,
    open_page,
    speech_mic,  # noqa: F401 - a fixture, used by name
    wait_for_events,
    wait_for_state,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package)")


async def test_demo_recording_badge_and_the_recording_of_a_browser_call(
        relay_factory, speech_mic: Path, tmp_path: Path) -> None:  # noqa: F811
    relay = await relay_factory(default_session=FAST_VAD, record="all",
                                record_dir=str(tmp_path / "recordings"))
    async with chromium(tmp_path / "profile", speech_mic) as context:
        page, errors = await open_page(context, base_url(relay))
        assert not await page.locator("#recording").is_visible()
        await page.get_by_role("button", name="Start").click()
        await wait_for_state(page, "connected")
        await page.locator("#recording").wait_for(state="visible")
        assert "recorded" in (await page.locator("#recording").text_content() or "")
        await wait_for_events(page, "relay.recording.started", "output_audio_buffer.stopped")
        if os.environ.get(SCREENSHOT_ENV):
            await page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
        call_id = await page.evaluate("window.relayDemo.callId")
        assert await page.evaluate("window.relayDemo.hangup()") == 200
        assert errors == []
    recordings = relay.app[RECORDS].recordings
    await until(lambda: recordings.status(call_id) == "ready", 10, "the recording")
    async with ClientSession() as http:
        async with http.get(f"{base_url(relay)}/v1/realtime/calls/{call_id}/content",
                            headers={"Authorization": "Bearer any"}) as response:
            assert response.status == 200
            body = await response.read()
    files = unzip(body)
    rate, audio = read_audio(files["audio.ogg"])
    peak = np.abs(audio).max(axis=0)
    assert peak[0] > 0.05 and peak[1] > 0.05, peak  # the user spoke; the parrot answered
    metadata = json.loads(files["metadata.json"])
    assert metadata["ended"]["reason"] == "hangup"
    assert metadata["call"]["rtp"]["inbound"]["packets_received"] > 50
