"""Running the relay's app until it is told to stop, on the configured event loop.

SIGTERM or SIGINT (Ctrl-C) begins the drain (relay/server/drain.py): no new calls, live
calls go on up to ``drain_timeout``, then the app shuts down and the process exits 0. A
second signal ends the live calls at once. A worker of ``relay serve --workers N``
(relay/cluster/) also drains when its supervisor is gone: the supervisor holds the write
end of the worker's stdin, so its death, even by SIGKILL, reads as end-of-file here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator

from aiohttp import web

from ..cluster.node import start_internal_sites
from ..config import Settings
from ..errors import ConfigError
from .app import DRAIN, NODE, REGISTRY, create_app
from .app_state import WS_SESSIONS
from .drain import Drain

logger = logging.getLogger(__name__)

#: Garbage-collector thresholds while serving. Every RTP packet and audio event allocates
#: a few short-lived containers, so CPython's default (700, 10, 10) collects the young
#: generation dozens of times a second per call; collecting ~30× less often measured
#: 0.71 of the right-sized echo's CPU against 0.80 (scripts/bench, N = 12, one paired
#: three-round run). The youngest generation then holds at most a few megabytes.
GC_THRESHOLDS = (20_000, 20, 20)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(settings: Settings) -> None:
    """Serve ``settings``' relay until a stop signal, drain, then shut down cleanly (also
    when cancelled)."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    thresholds = gc.get_threshold()
    try:
        worker = settings.worker_index is not None
        # Workers of one supervisor share the port; the kernel spreads connections.
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=worker or None)
        await site.start()
        await start_internal_sites(runner, app[NODE])
        # Everything built so far (modules, the app) lives as long as the process: keep it
        # out of every future collection.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        loop = type(asyncio.get_running_loop())
        logger.info("relay listening on http://%s:%d/ (event loop: %s.%s)%s", settings.host,
                    settings.port, loop.__module__, loop.__qualname__,
                    f", worker {settings.worker_index} (pid {os.getpid()})" if worker else "")
        drain = app[DRAIN]
        with _stop_on_signals(drain), _stop_with_supervisor(drain, worker):
            await drain.begun()
            await drain.run(app[REGISTRY], app[WS_SESSIONS])
    finally:
        await runner.cleanup()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextlib.contextmanager
def _stop_on_signals(drain: Drain) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, drain.begin, sig.name)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a loop without signals: cancellation only
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def _stop_with_supervisor(drain: Drain, worker: bool) -> Iterator[None]:
    fd = sys.stdin.fileno() if worker and sys.stdin is not None else -1
    if fd < 0 or not stat.S_ISFIFO(os.fstat(fd).st_mode):
        yield
        return
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            drain.begin("the supervisor is gone")

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        loop.remove_reader(fd)


def run(settings: Settings) -> None:
    """Serve until stopped, on the event loop ``settings.event_loop`` names."""
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
