"""The event-loop lag monitor: measured into /metrics, warned about past the threshold."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from relay.server.loop_lag import WARN_EVERY, LoopLagMonitor

from ..conftest import RelayFactory, base_url


async def gauges(url: str) -> dict[str, float]:
    async with ClientSession() as http:
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if not s.labels}


async def test_loop_lag_reaches_the_metrics_and_warns(
        relay_factory: RelayFactory, caplog: pytest.LogCaptureFixture) -> None:
    relay = await relay_factory(loop_lag_warning=0.2)
    await asyncio.sleep(0.3)
    assert (await gauges(base_url(relay)))["relay_event_loop_lag_max_seconds"] < 0.2
    with caplog.at_level(logging.WARNING, logger="relay.server.loop_lag"):
        # A callback hogs the loop for 0.6 s: the monitor's timer, due within 0.25 s of
        # its start, runs at least 0.35 s late.
        asyncio.get_running_loop().call_soon(time.sleep, 0.6)
        await asyncio.sleep(0.8)
    values = await gauges(base_url(relay))
    assert 0.34 <= values["relay_event_loop_lag_max_seconds"] < 1.0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "relay.server.loop_lag"]
    assert "the event loop lagged" in warning and "with 0 calls live" in warning


def test_loop_lag_warns_at_most_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopLagMonitor(0.1, lambda: 3)
    with caplog.at_level(logging.WARNING, logger="relay.server.loop_lag"):
        monitor.observe(0.05, now=0.0)  # below the threshold
        monitor.observe(0.15, now=1.0)
        monitor.observe(0.30, now=2.0)  # within the period: counted, not logged
        monitor.observe(0.20, now=1.0 + WARN_EVERY)
    assert [r.getMessage() for r in caplog.records] == [
        "the event loop lagged 150 ms (threshold 100 ms) with 3 calls live: "
        "their audio may have gaps",
        "the event loop lagged 200 ms (threshold 100 ms) with 3 calls live: "
        "their audio may have gaps"]
    assert monitor.lag == 0.20 and monitor.recent_max == 0.30
