"""The supervisor of ``relay serve --workers N``: start the workers, keep them up, stop them.

It never accepts a connection itself. Before starting anything it checks that the port
can be bound (a clear error instead of N workers failing). Each worker is
``python -m relay serve`` with the supervisor's own arguments and environment, plus
``--workers 1``, its share of ``--udp-ports`` (relay/webrtc/udp_ports.py) and, in its
environment, its index and the supervisor's runtime directory (a private ``mkdtemp``
directory, removed when the supervisor exits). Workers run in their own session, so a
terminal's Ctrl-C reaches them once, through the supervisor.

A worker that dies unexpectedly is restarted after a backoff that doubles with each recent
restart; more than :data:`MAX_RESTARTS` restarts of one worker within
:data:`RESTART_WINDOW` seconds, or a worker exiting with code 2 (a setting it cannot work
with), stops everything and the supervisor exits 1. SIGTERM or SIGINT is forwarded to
every worker, which drains; the supervisor waits for them up to the drain timeout plus a
margin, kills what is left by PID, and exits 0 when every worker stopped cleanly.
Workers never outlive the supervisor: each one's stdin is a pipe whose write end only
the supervisor holds, and a worker drains and exits when it reads end-of-file there
(relay/server/serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Sequence

from ..config import FAREWELL_SECONDS, Settings, worker_environment
from ..errors import ConfigError
from ..webrtc.udp_ports import worker_udp_ports

logger = logging.getLogger(__name__)

#: A worker restarted more often than this within the window is in a crash loop.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds before the first restart of a worker; each recent restart doubles it.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
#: Seconds, beyond the drain timeout, that stopping workers get before they are killed.
STOP_MARGIN = 10.0
#: The exit code of ``relay`` for a setting that cannot work (relay/__main__.py).
CONFIG_EXIT = 2


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """Run ``settings.workers`` workers of ``relay serve`` (``argv``: the supervisor's own
    arguments, ``serve`` first) until stopped; return the process's exit code."""
    check_port(settings.host, settings.port)
    directory = tempfile.mkdtemp(prefix="relay-workers-")  # mode 0700
    try:
        return asyncio.run(Supervisor(settings, argv, directory).run())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` unless ``host``:``port`` can be listened on now."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}", param="host") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            # As the workers' listening sockets will be, except for SO_REUSEPORT: a port
            # another group of processes shares must count as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                  param="port") from exc


def describe_exit(code: int) -> str:
    """``"exited with code 1"`` or ``"was killed by SIGKILL"``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """The workers of one ``relay serve --workers N``, and what keeps them running."""

    #: The module's constants, as attributes so a test can run the same logic faster.
    backoff_first = BACKOFF_FIRST
    backoff_max = BACKOFF_MAX
    restart_window = RESTART_WINDOW

    def __init__(self, settings: Settings, argv: Sequence[str], directory: str) -> None:
        self.settings = settings
        self.argv = list(argv)
        #: The private runtime directory the workers share (``RELAY_WORKER_DIR``).
        self.directory = directory
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._restarts: dict[int, deque[float]] = {}
        self._stopping = asyncio.Event()
        #: Why the supervisor gives up (None: it was asked to stop).
        self._failure: str | None = None

    def worker_argv(self, index: int) -> list[str]:
        """The command line of worker ``index``."""
        extra = ["--workers", "1"]
        if self.settings.udp_ports is not None:
            low, high = worker_udp_ports(self.settings.udp_ports, index, self.settings.workers)
            extra += ["--udp-ports", f"{low}-{high}"]
        # argparse keeps a flag's last value: these win over the same flags in argv.
        return [sys.executable, "-m", "relay", *self.argv, *extra]

    async def run(self) -> int:
        """Start every worker, keep them up until a stop signal (or a crash loop), stop
        them; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig)
        count = self.settings.workers
        logger.info("supervisor (pid %d): %d workers on http://%s:%d/", os.getpid(), count,
                    self.settings.host, self.settings.port)
        watchers = [asyncio.create_task(self._keep(index), name=f"worker-{index}")
                    for index in range(count)]
        try:
            await self._stopping.wait()
            clean = await self._stop_all()
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self._failure is not None:
            logger.error("supervisor: %s", self._failure)
            return 1
        logger.info("supervisor: every worker stopped%s", "" if clean else " (not all cleanly)")
        return 0 if clean else 1

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop every worker (they drain); a second stop is forwarded too, so a second
        Ctrl-C ends the workers' calls at once."""
        if self._stopping.is_set():
            logger.info("supervisor: %s again, forwarded to the workers", sig.name)
        else:
            logger.info("supervisor: %s, stopping the workers", sig.name)
            self._stopping.set()
        self._signal_all(sig)

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def _start(self, index: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self.worker_argv(index), stdin=asyncio.subprocess.PIPE,
            env=worker_environment(index, self.directory), start_new_session=True)
        self._processes[index] = process
        logger.info("worker %d started (pid %d)", index, process.pid)
        if self._stopping.is_set():  # a stop came while it was starting
            process.send_signal(signal.SIGTERM)
        return process

    async def _keep(self, index: int) -> None:
        """Run worker ``index``, and again after each unexpected exit, until stopping."""
        loop = asyncio.get_running_loop()
        recent = self._restarts.setdefault(index, deque())
        while not self._stopping.is_set():
            process = await self._start(index)
            code = await process.wait()
            if self._stopping.is_set():
                return
            now = loop.time()
            while recent and now - recent[0] > self.restart_window:
                recent.popleft()
            del self._processes[index]  # nothing left to signal or wait for
            what = f"worker {index} (pid {process.pid}) {describe_exit(code)}"
            if code == CONFIG_EXIT:
                self._give_up(f"{what}: a setting it cannot work with (see above)")
                return
            if len(recent) >= MAX_RESTARTS:
                self._give_up(f"{what}, its {len(recent) + 1}th exit within "
                              f"{self.restart_window:g} s: giving up (crash loop)")
                return
            delay = min(self.backoff_max, self.backoff_first * 2 ** len(recent))
            recent.append(now)
            logger.warning("%s; restarting it in %g s", what, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _give_up(self, why: str) -> None:
        if self._failure is None:
            self._failure = why
        logger.error("%s; stopping every worker", why)
        self._stopping.set()
        self._signal_all(signal.SIGTERM)

    async def _stop_all(self) -> bool:
        """Wait for every worker to exit, up to the drain timeout and a margin, then kill
        the rest; True when each exited by itself with code 0 (or by our signal)."""
        grace = self.settings.drain_timeout + FAREWELL_SECONDS + STOP_MARGIN
        processes = list(self._processes.items())
        waits = [asyncio.ensure_future(p.wait()) for _, p in processes]
        _, pending = await asyncio.wait(waits, timeout=grace) if waits else (set(), set())
        clean = not pending
        for (index, process), wait in zip(processes, waits, strict=True):
            if wait in pending:
                logger.error("worker %d (pid %d) still running %g s after the stop: killing it",
                             index, process.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            code = await wait
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                clean = False
                logger.warning("worker %d (pid %d) %s", index, process.pid, describe_exit(code))
        return clean
