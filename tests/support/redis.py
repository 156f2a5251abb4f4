"""A real Redis for tests: Debian's ``redis-server`` on a free loopback port, nothing saved.

Started per test (or per module) and stopped by its PID; tests that need it are skipped,
saying why, where ``redis-server`` is not installed (scripts/setup --test installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import stop

#: Why Redis tests cannot run here, or None.
REDIS_MISSING = (None if shutil.which("redis-server") else
                 "redis-server is not installed (Debian package redis-server; "
                 "scripts/setup --test installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; :meth:`stop` and :meth:`start` again
    (same port, empty: nothing is persisted) to play an outage."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._workdir),
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self._process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not come up"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (by PID) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        stop(process)


def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A running :class:`RedisServer` (the body of a fixture), skipped without Redis."""
    if REDIS_MISSING:
        pytest.skip(REDIS_MISSING)
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
