"""Shared fixtures: a relay on loopback, and clients that keep ICE on loopback."""

from __future__ import annotations

import logging
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.client import CallClient, PcmSource, read_wav
from relay.config import Settings
from relay.logs import NOISY
from relay.server.app import REGISTRY, create_app

from .support.netlab import NetLab, lab_problem

FIXTURES = Path(__file__).parent / "fixtures"
LOOPBACK = ("127.0.0.1",)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that run the CLI in-process configure logging (a root handler on a captured
    stream, levels): undo it, so no later test logs into a closed stream or sees other
    levels."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in NOISY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in levels.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture(scope="session")
def speech() -> bytes:
    """About 1.9 s of espeak-ng speech, 24 kHz mono PCM16."""
    return read_wav(FIXTURES / "hello.wav")


def loopback_settings(**changes: Any) -> Settings:
    """Settings for a test relay: loopback ICE, no STUN, the embedded upstream as a parrot
    (what most tests listen for; the assistant's own tests ask for it)."""
    return Settings(ice_addresses=LOOPBACK, ice_servers=(), connect_timeout=20,
                    local_mode="parrot").replace(**changes)


RelayFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def relay_factory(aiohttp_server: Any) -> RelayFactory:
    """Start a relay app on 127.0.0.1 with the given settings changes."""
    async def start(**changes: Any) -> TestServer:
        app: web.Application = create_app(loopback_settings(**changes))
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        return server
    return start


@pytest.fixture
async def relay(relay_factory: RelayFactory) -> TestServer:
    """A relay with default settings on the embedded upstream."""
    return await relay_factory()


def base_url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def live_calls(server: TestServer) -> int:
    return len(server.app[REGISTRY])


@pytest.fixture
async def make_client(relay: TestServer) -> AsyncIterator[Callable[..., CallClient]]:
    """Build clients of ``relay`` that are closed at the end of the test."""
    clients: list[CallClient] = []

    def make(pcm: bytes = b"", server: TestServer | None = None, **kwargs: Any) -> CallClient:
        client = CallClient(base_url(server or relay), PcmSource(pcm), ice_addresses=LOOPBACK,
                            **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def write_wav(path: Path, pcm: bytes, rate: int = 24000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    """Network namespaces wired to the test's own (skipped where that cannot be done
    safely: see :func:`tests.support.netlab.lab_problem`); everything is undone after."""
    problem = lab_problem()
    if problem:
        pytest.skip(f"network lab: {problem}")
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()
