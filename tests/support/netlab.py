"""Network namespaces for tests: a client, a TURN server, firewalls, on wires of their own.

:class:`NetLab` makes namespaces without naming them anywhere on the machine: each is held
by a ``unshare -n sleep`` process, entered with ``nsenter -t PID -n``, and joined to the
test's own namespace by a veth pair; the test's namespace routes between them. Nothing
uses an address outside 10.201.0.0/16, every process is stopped by its PID, and closing
the lab removes every link, nftables table and process it made.

It runs only as root, with ``ip``, ``nft``, ``nsenter`` and ``unshare``, in a namespace
that has nothing but loopback (the one scripts/test makes): :func:`lab_problem` says why
not otherwise, and the fixture skips with it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

TOOLS = ("ip", "nft", "nsenter", "unshare")
#: Every link this lab makes starts with this (and nothing else in the namespace may exist).
PREFIX = "rl"
ROOT = Path(__file__).resolve().parent.parent.parent
HOLD_SECONDS = 3600


def lab_problem(*tools: str) -> str | None:
    """Why a lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, nftables)"
    missing = [tool for tool in (*TOOLS, *tools) if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (scripts/setup --test installs them)"
    # (/sys/class/net shows the namespace sysfs was mounted in; this asks the kernel.)
    links = [name for _, name in socket.if_nameindex()
             if name != "lo" and not name.startswith(PREFIX)]
    if links:
        return ("runs only in a private network namespace holding nothing but loopback "
                f"(scripts/test makes one); this one has {', '.join(sorted(links))}")
    return None


def _run(argv: Sequence[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, text=True, capture_output=True, timeout=20)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


class Namespace:
    """A network namespace held by a sleeping process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder = subprocess.Popen(["unshare", "-n", "sleep", str(HOLD_SECONDS)])
        own = os.readlink("/proc/self/ns/net")
        for _ in range(200):  # until unshare has made the namespace (bounded: 2 s)
            try:
                if os.readlink(f"/proc/{self._holder.pid}/ns/net") != own:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        else:
            self.close()
            raise RuntimeError(f"namespace {name} did not appear")
        self.pid = self._holder.pid
        self.wire = ""
        self.run_checked("ip", "link", "set", "lo", "up")

    def enter(self, *argv: str) -> list[str]:
        """``argv`` as a command that runs inside this namespace."""
        return ["nsenter", "-t", str(self.pid), "-n", "--", *argv]

    def run_checked(self, *argv: str, stdin: str | None = None) -> None:
        """Run a short command inside; raise if it fails."""
        _run(self.enter(*argv), stdin)

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset inside (the namespace's tables die with it)."""
        self.run_checked("nft", "-f", "-", stdin=ruleset)

    def close(self) -> None:
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait(timeout=10)


class NetLab:
    """Namespaces wired to this one, which routes between them; :meth:`close` undoes all."""

    def __init__(self) -> None:
        self._count = itertools.count()
        self._namespaces: list[Namespace] = []
        self._links: list[str] = []
        self._tables: list[str] = []
        self._addresses: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")

    def namespace(self, name: str, here: str, there: str) -> Namespace:
        """A new namespace on a /24 wire: this side ``here``, its side ``there``, its default
        route through ``here``."""
        ns = Namespace(name)
        self._namespaces.append(ns)
        n = next(self._count)
        near, far = f"{PREFIX}{n}h", f"{PREFIX}{n}n"
        _run(["ip", "link", "add", near, "type", "veth", "peer", "name", far])
        self._links.append(near)
        _run(["ip", "link", "set", far, "netns", str(ns.pid)])
        _run(["ip", "addr", "add", f"{here}/24", "dev", near])
        _run(["ip", "link", "set", near, "up"])
        ns.run_checked("ip", "addr", "add", f"{there}/24", "dev", far)
        ns.run_checked("ip", "link", "set", far, "up")
        ns.run_checked("ip", "route", "add", "default", "via", here)
        #: The name of its wire inside it (to cut it: ``ip link set NAME down`` there).
        ns.wire = far
        return ns

    def link(self, ns: Namespace, here: str, there: str, *, metric: int) -> str:
        """A second wire into ``ns`` (a client with two networks, Wi-Fi and cellular): this
        side ``here``, its side ``there``, a default route through it of ``metric`` (higher:
        used once the first wire is down). Returns the link's name inside ``ns``."""
        n = next(self._count)
        near, far = f"{PREFIX}{n}h", f"{PREFIX}{n}n"
        _run(["ip", "link", "add", near, "type", "veth", "peer", "name", far])
        self._links.append(near)
        _run(["ip", "link", "set", far, "netns", str(ns.pid)])
        _run(["ip", "addr", "add", f"{here}/24", "dev", near])
        _run(["ip", "link", "set", near, "up"])
        ns.run_checked("ip", "addr", "add", f"{there}/24", "dev", far)
        ns.run_checked("ip", "link", "set", far, "up")
        ns.run_checked("ip", "route", "add", "default", "via", here, "metric", str(metric))
        return far

    def add_address(self, address: str) -> None:
        """An extra address of this namespace, on its loopback (removed by :meth:`close`)."""
        _run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
        self._addresses.append(address)

    def nft_here(self, table: str, ruleset: str) -> None:
        """Load ``ruleset`` (which defines ``inet`` table ``table``) into this namespace."""
        _run(["nft", "-f", "-"], ruleset)
        self._tables.append(table)

    def start(self, ns: Namespace, *argv: str, log: Path | None = None,
              ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside ``ns``; stopped by :meth:`close`."""
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(ns.enter(*argv), stdout=out, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        self._processes.append(process)
        return process

    def python(self, ns: Namespace, *argv: str, log: Path | None = None,
               ) -> subprocess.Popen[bytes]:
        """``python -m ...`` from this tree, inside ``ns``."""
        return self.start(ns, sys.executable, *argv, log=log)

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for table in self._tables:
            subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for address in self._addresses:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"],
                           capture_output=True)
        for ns in self._namespaces:
            ns.close()
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self._forwarding)


async def wait_for_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    """Until something accepts TCP connections on ``host:port`` (seen from here)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return
