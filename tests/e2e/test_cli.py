"""The real commands, as a user runs them: relay serve, relay call, relay upstream."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from relay.__main__ import main

from ..conftest import FIXTURES
from ..support.processes import stop

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.Popen([sys.executable, "-m", "relay", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "relay serve did not come up"
            time.sleep(0.1)


def relay_call(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", "call", "--ice-address", "127.0.0.1",
                           "--timeout", "40", *args],
                          capture_output=True, text=True, timeout=90, cwd=ROOT)


@pytest.fixture(params=["uvloop", "asyncio"])
def served_relay(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    session = json.dumps({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "silence_duration_ms": 400}}}})
    process = start("serve", "--port", str(port), "--ice-address", "127.0.0.1",
                    "--session", session, "--event-loop", request.param,
                    "--local-mode", "parrot")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    try:
        yield url
    finally:
        stop(process)
    log = process.stdout.read().decode() if process.stdout else ""
    assert f"event loop: {request.param}." in log


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)


def envelope(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 480 * 480].reshape(-1, 480)
    return np.sqrt((frames**2).mean(axis=1))


def test_cli_serve_then_call_hears_the_utterance_back(served_relay: str, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    result = relay_call("--input", str(FIXTURES / "hello.wav"), "--output", str(out),
                        "--url", served_relay)
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds[0] == "session.created" and "response.done" in kinds
    sent, heard = read_pcm(FIXTURES / "hello.wav"), read_pcm(out)
    a, b = envelope(sent), envelope(heard)
    # The reply's loudness contour matches the utterance's (Opus both ways changes samples,
    # not the shape): find the best alignment and correlate.
    best = max(float(np.corrcoef(a, b[lag:lag + len(a)])[0, 1])
               for lag in range(len(b) - len(a)) if b[lag:lag + len(a)].std() > 0)
    assert best > 0.9, best


def test_cli_serve_agent_then_call_say_hears_the_tools_answer(tmp_path: Path) -> None:
    port = free_port()
    process = start("serve", "--port", str(port), "--ice-address", "127.0.0.1",
                    "--agent", "examples.weather_agent:agent")
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "reply.wav"
    try:
        wait_healthy(url, process, 90)  # importing the Agents SDK takes seconds
        result = relay_call("--say", "what does get_weather say for Paris?",
                            "--output", str(out), "--url", url)
    finally:
        stop(process)
    log = process.stdout.read().decode() if process.stdout else ""
    assert result.returncode == 0, result.stderr + log
    events = [json.loads(line) for line in result.stdout.splitlines()]
    [called] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert called["name"] == "get_weather"
    [said] = [e["transcript"] for e in events
              if e["type"] == "response.output_audio_transcript.done"]
    # The tool's output ("example": what the embedded server passes for a string).
    assert said == "I used get_weather: The weather in example is mild and dry, 17 C."
    assert events[-1]["type"] == "output_audio_buffer.stopped"
    assert envelope(read_pcm(out)).max() > 300  # the reply's audio arrived on the track
    assert "agent examples.weather_agent:agent attached" in log


def test_cli_call_needs_something_to_say(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["call", "--url", "http://127.0.0.1:9"])
    assert info.value.code == 2
    assert "relay call needs --input, --say or both" in capsys.readouterr().err


async def test_cli_upstream_serves_the_realtime_protocol_alone() -> None:
    port = free_port()
    process = start("upstream", "--port", str(port))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ws = await connect(f"ws://127.0.0.1:{port}/v1/realtime?model=m")
                break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        async with ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "session.created" and first["session"]["model"] == "m"
            await ws.send(json.dumps({"type": "response.create"}))
            kinds = []
            while "response.done" not in kinds:
                kinds.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
            assert "response.output_audio.delta" in kinds
    finally:
        stop(process)
