"""The supervisor's decisions that need no process: worker command lines, UDP port shares,
how an exit is told, the port check."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import pytest

from relay.__main__ import build_parser
from relay.cluster.supervisor import MAX_RESTARTS, Supervisor, check_port, describe_exit
from relay.config import Settings
from relay.errors import ConfigError
from relay.webrtc.udp_ports import worker_udp_ports


@pytest.mark.parametrize(("ports", "workers", "shares"), [
    ((50000, 50099), 2, [(50000, 50049), (50050, 50099)]),
    ((50000, 50006), 3, [(50000, 50001), (50002, 50003), (50004, 50006)]),
    ((3478, 3478), 3, [(3478, 3478), (3479, 3479), (3480, 3480)]),
])
def test_supervisor_udp_shares_are_disjoint_and_cover_the_range(
        ports: tuple[int, int], workers: int, shares: list[tuple[int, int]]) -> None:
    assert [worker_udp_ports(ports, i, workers) for i in range(workers)] == shares


def test_supervisor_worker_argv_forces_one_worker_and_its_udp_share() -> None:
    settings = Settings(workers=2, udp_ports=(50000, 50099))
    argv = ["serve", "--workers", "2", "--udp-ports", "50000-50099", "--port", "9000"]
    supervisor = Supervisor(settings, argv, "/nonexistent")
    assert supervisor.worker_argv(1) == [sys.executable, "-m", "relay", *argv,
                                         "--workers", "1", "--udp-ports", "50050-50099"]
    # argparse keeps the last value of a flag: the worker's own settings.
    args = build_parser().parse_args(supervisor.worker_argv(1)[3:])
    worker = Settings.from_args(args, {})
    assert (worker.workers, worker.udp_ports, worker.port) == (1, (50050, 50099), 9000)


def test_supervisor_describes_exits_by_code_and_by_signal() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def test_supervisor_port_check_names_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again


class Crashing(Supervisor):
    """A supervisor whose workers crash at once (a real process each time), on a fast
    clock."""

    backoff_first = 0.01
    backoff_max = 0.05

    def worker_argv(self, index: int) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit(3)"]


async def test_supervisor_gives_up_on_a_crash_loop(caplog: pytest.LogCaptureFixture,
                                                   tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, "relay.cluster.supervisor")
    supervisor = Crashing(Settings(workers=2), ["serve"], str(tmp_path))
    assert await asyncio.wait_for(supervisor.run(), 30) == 1
    restarts = [r.getMessage() for r in caplog.records if "restarting it in" in r.getMessage()]
    assert len(restarts) >= MAX_RESTARTS
    assert "exited with code 3; restarting it in 0.01 s" in restarts[0]
    assert any("giving up (crash loop)" in r.getMessage() for r in caplog.records)
