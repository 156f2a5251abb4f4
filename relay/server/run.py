"""Running the relay's app until interrupted, on the configured event loop."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
from collections.abc import Callable

from aiohttp import web

from ..cluster.node import start_internal_sites
from ..config import Settings
from ..errors import ConfigError
from .app import NODE, create_app

logger = logging.getLogger(__name__)

#: Garbage-collector thresholds while serving. Every RTP packet and audio event allocates
#: a few short-lived containers, so CPython's default (700, 10, 10) collects the young
#: generation dozens of times a second per call; collecting ~30× less often measured
#: 0.71 of the right-sized echo's CPU against 0.80 (scripts/bench, N = 12, one paired
#: three-round run). The youngest generation then holds at most a few megabytes.
GC_THRESHOLDS = (20_000, 20, 20)


async def serve(settings: Settings) -> None:
    """Serve ``settings``' relay until cancelled (Ctrl-C), then shut down cleanly."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    await start_internal_sites(runner, app[NODE])
    # Everything built so far (modules, the app) lives as long as the process: keep it out
    # of every future collection.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    loop = type(asyncio.get_running_loop())
    logger.info("relay listening on http://%s:%d/ (event loop: %s.%s)", settings.host,
                settings.port, loop.__module__, loop.__qualname__)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run(settings: Settings) -> None:
    """Serve until interrupted, on the event loop ``settings.event_loop`` names."""
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (``auto``, ``uvloop``, ``asyncio``); None: asyncio's."""
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise ConfigError(f"{Settings.names('event_loop')} is uvloop, which is not installed",
                          param="event_loop") from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
