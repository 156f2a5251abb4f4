"""``relay serve --record all`` as a user runs it: a relay killed mid-call leaves a
recording that decodes up to the kill, and with ``--workers 2`` a recording downloads
through whichever worker a request reaches."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from relay.client import CallClient, PcmSource

from ..conftest import LOOPBACK
from ..e2e.test_barge_in import tone
from ..e2e.test_cli import free_port, start, wait_healthy
from ..e2e.test_udp_ports import free_ports
from ..e2e.test_workers import START_SECONDS, stop_by_pid, worker_pids
from ..support.processes import stop
from .support import read_audio, unzip

FLUSH_SLACK = 1.0  # a flush (0.25 s), the take's lag (0.1 s), an Ogg page (0.1 s), with room


async def test_recording_survives_sigkill_up_to_the_kill(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start("serve", "--port", str(port), "--ice-address", "127.0.0.1",
                    "--local-mode", "echo", "--record", "all", "--record-dir", str(tmp_path))
    source = PcmSource()
    client = CallClient(url, source, ice_addresses=LOOPBACK)
    try:
        await asyncio.to_thread(wait_healthy, url, process, 30)
        await client.connect()
        await client.wait_for("relay.recording.started", timeout=10)
        source.play(tone(10.0, 440))
        await asyncio.sleep(3.0)
        assert client.call_id is not None
        directory = tmp_path / client.call_id
        started = json.loads((directory / "metadata.json").read_text())["created_at"]
        killed_at = time.time()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        await client.close()
        stop(process, signal.SIGKILL)
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["status"] == "recording"  # its end was never written
    rate, audio = read_audio(directory / "audio.ogg")
    seconds = len(audio) / rate
    # From the offer to the kill, less what was not flushed yet.
    assert killed_at - started - FLUSH_SLACK <= seconds <= killed_at - started, (
        seconds, killed_at - started)
    # The user's tone (and its echo) run up to the last moments written.
    tail = audio[-int(0.3 * rate):-int(0.1 * rate)]
    assert np.sqrt(np.mean(tail[:, 0] ** 2)) > 0.05
    assert np.sqrt(np.mean(tail[:, 1] ** 2)) > 0.05
    lines = (directory / "events.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["t"] >= 0 for line in lines)


def fetch(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer sk-test"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


async def test_recording_downloads_through_either_worker(tmp_path: Path) -> None:
    port, udp = free_port(), free_ports(2)
    url = f"http://127.0.0.1:{port}"
    process = start("serve", "--workers", "2", "--port", str(port), "--ice-address",
                    "127.0.0.1", "--local-mode", "echo", "--udp-ports", str(udp),
                    "--drain-timeout", "0", "--record", "all", "--record-dir", str(tmp_path))
    pids: dict[int, int] = {}
    source = PcmSource()
    client = CallClient(url, source, ice_addresses=LOOPBACK)
    try:
        await asyncio.to_thread(wait_healthy, url, process, START_SECONDS)
        pids = await asyncio.to_thread(worker_pids, url, 2)
        await client.connect()
        await client.wait_for("relay.recording.started", timeout=10)
        source.play(tone(1.0, 440))
        await asyncio.sleep(1.5)
        content = f"{url}/v1/realtime/calls/{client.call_id}/content"
        status, body = await asyncio.to_thread(fetch, content)
        assert status == 409, body  # live: still being recorded
        assert json.loads(body)["error"]["code"] == "recording_in_progress"
        assert await client.hangup() == 200
        deadline = time.monotonic() + 10
        while (status := (await asyncio.to_thread(fetch, content))[0]) == 409:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        # 16 fresh connections: all on the owner by chance would be 1 in 2**16.
        bodies = set()
        for _ in range(16):
            status, body = await asyncio.to_thread(fetch, content)
            assert status == 200, body
            bodies.add(body)
        assert len(bodies) == 1
        files = unzip(bodies.pop())
        assert set(files) == {"audio.ogg", "events.jsonl", "metadata.json"}
        assert json.loads(files["metadata.json"])["call_id"] == client.call_id
        rate, audio = read_audio(files["audio.ogg"])
        assert len(audio) / rate > 1.0
        for _ in range(8):  # no recording: 404 from either worker
            status, body = await asyncio.to_thread(
                fetch, f"{url}/v1/realtime/calls/rtc_u1_{'x' * 32}/content")
            assert status == 404, body
    finally:
        await client.close()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        finally:
            stop_by_pid(process, *pids.values())
