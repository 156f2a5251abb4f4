"""The watch over every hostile test: whatever a test sends, the relay it started answers
no 5xx, logs no traceback (nor anything at ERROR), and ends no call without first telling
the client why in an ``error`` event.

Every relay made with ``relay_factory`` (the ``relay`` fixture too) is watched: its
responses' statuses, the calls it ends and how, and every log record of the test. A test
that provokes a 5xx on purpose (an upstream that refuses, in the leak test) names the
statuses it expects with ``hostile_watch.allow(502)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.server.app import REGISTRY, create_app

from ..conftest import RelayFactory, loopback_settings

#: How a call ends when the client (or the test) ended it, or never connected: no
#: ``error`` event is owed for these.
CLIENT_ENDINGS = ("hangup", "setup failed", "closed", "relay shutting down",
                  "peer connection ", "peer went silent", "peer did not connect")


@dataclass
class HostileWatch:
    """What the watched relays did during one test."""

    statuses: list[tuple[str, int]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def allow(self, *statuses: int) -> None:
        """This test provokes these 5xx statuses on purpose."""
        self.allowed.update(statuses)

    def watch(self, app: web.Application) -> None:
        """Record what ``app`` (not started yet) answers and how its calls end."""
        async def record(request: web.Request, response: web.StreamResponse) -> None:
            self.statuses.append((f"{request.method} {request.path}", response.status))

        app.on_response_prepare.append(record)
        registry = app[REGISTRY]
        registry.on_ended.append(lambda call_id: self.ended.append(
            registry.ended(call_id) or {"id": call_id}))

    def problems(self, records: list[logging.LogRecord]) -> list[str]:
        found = [f"{what} answered {status}" for what, status in self.statuses
                 if status >= 500 and status not in self.allowed]
        found += [f"log {r.levelname} {r.name}: {r.getMessage()[:200]}"
                  + (" (with a traceback)" if r.exc_info else "")
                  for r in records if r.exc_info or r.levelno >= logging.ERROR]
        for call in self.ended:
            reason = call.get("close_reason") or ""
            if not reason.startswith(CLIENT_ENDINGS) and not call.get("last_error"):
                found.append(f"call {call['id']} ended ({reason}) without an error event")
        return found


@pytest.fixture
def hostile_watch() -> HostileWatch:
    """What the relays of this test did (see the module docstring)."""
    return HostileWatch()


@pytest.fixture
async def relay_factory(aiohttp_server: Any, hostile_watch: HostileWatch) -> RelayFactory:
    """The shared factory's relays (tests/conftest.py), each watched."""
    async def start(**changes: Any) -> TestServer:
        app: web.Application = create_app(loopback_settings(**changes))
        hostile_watch.watch(app)
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        return server
    return start


@pytest.fixture(autouse=True)
def _hostile_run_is_clean(request: pytest.FixtureRequest, hostile_watch: HostileWatch,
                          caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each hostile test (its relays closed): no 5xx, no traceback, no call ended
    without an ``error`` event naming the reason."""
    caplog.set_level(logging.INFO)
    yield
    # The relays were closed before this (their fixtures were set up after this one);
    # calls live then ended "relay shutting down", which is the test's doing.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    problems = hostile_watch.problems(records)
    assert not problems, problems
