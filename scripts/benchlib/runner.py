"""Start, pin, drive and stop the processes of one benchmark run.

For every N, and in each round, every server in turn gets a fresh process on the server
core, and a fresh load process on the load core drives N concurrent calls against it; the
load process reads the server's CPU time and RSS from /proc at the edges of its measured
window. Servers are interleaved per N (not one server's whole sweep after another's), so
a busy spell on a shared machine hits neighbours in time, whose ratios are then compared
within the round. Then a last fresh server of each kind takes the sequential calls.
Every child is tracked and stopped by its PID, also when the run is interrupted.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

# The relay under test; {python} and {port} are filled in. Change here or with --relay-cmd.
RELAY_CMD = (
    "{python} -m relay serve --host 127.0.0.1 --port {port}"
    " --local-mode echo --ice-address 127.0.0.1"
)
BASELINES = ("bare", "rightsized")
#: Environment of every child beside the parent's. The relay's limit on calls one address
#: may create a minute (60) would refuse some of the sequential calls, which all come from
#: 127.0.0.1: the run measures what calls cost, not the limits. (A tree older than the
#: limits ignores the variable, so before/after variants run alike.)
CHILD_ENV = {"RELAY_CALL_RATE_PER_ADDRESS": "1000000", "RELAY_DRAIN_TIMEOUT": "0"}
SERVER_CORE = 0
LOAD_CORE = 1
READY_TIMEOUT = 30.0
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Plan:
    """Everything one run needs to know."""

    servers: tuple[str, ...]
    ns: tuple[int, ...]
    duration: float
    warmup: float
    calls: int
    call_audio: float
    relay_cmd: str
    log_dir: Path
    datachannel: bool
    pin: bool
    #: Run the relay's fake model (the echo upstream) as its own process on the load core,
    #: as a real deployment's model is remote; False keeps it inside the relay's process.
    separate_upstream: bool
    script: Path  # scripts/bench, re-run for the baseline and load sub-modes
    repo: Path
    #: Relay variants: server name ("relay-NAME") → extra arguments for ``relay serve``.
    variants: dict[str, str] = field(default_factory=dict)
    #: Times the whole concurrent sweep is repeated.
    rounds: int = 1
    #: Each load session on an HTTP connection of its own (see benchlib.load).
    own_connections: bool = False
    #: Load sessions talk in turns of this many frames a second (None: without pause).
    spurt_frames: int | None = None
    #: The clients' audio: a key of ``benchlib.audio.LOADS`` (mono, stereo).
    load: str = "mono"


def log(message: str) -> None:
    """Progress to stderr, so stdout stays the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Processes:
    """The children of this run; each is stopped by its PID."""

    def __init__(self) -> None:
        self._running: list[tuple[subprocess.Popen[bytes], TextIO]] = []

    def start(
        self, argv: list[str], core: int | None, log_path: Path, cwd: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``core`` with taskset if given), output to ``log_path``."""
        if core is not None:
            argv = ["taskset", "-c", str(core), *argv]  # taskset execs: same PID
        handle = log_path.open("w")
        # Without an API key in its environment the relay uses its embedded upstream. A
        # relay stopped between runs ends its calls at once rather than draining them, and
        # takes the bench's sequential calls from one address (an older tree run as a
        # variant ignores both variables).
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | CHILD_ENV
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        self._running.append((proc, handle))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code."""
        entry = next((e for e in self._running if e[0] is proc), None)
        if entry is None:
            return proc.poll()
        self._running.remove(entry)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        entry[1].close()
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child still tracked."""
        for proc, _ in list(self._running):
            self.stop(proc)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until 127.0.0.1:``port`` accepts; raise if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not listening on port {port} after {timeout:.0f} s")


def workers_in(argv: list[str]) -> int:
    """The number of worker processes ``argv`` asks ``relay serve`` for (its last
    ``--workers``; 1 if none)."""
    count = 1
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--workers":
            count = (os.cpu_count() or 1) if value == "auto" else int(value)
    return count


def wait_workers(proc: subprocess.Popen[bytes], port: int, count: int, timeout: float) -> None:
    """Wait until ``count`` distinct workers answer ``/healthz`` on 127.0.0.1:``port``
    (fresh connections, which the kernel spreads); a port listening means only that the
    first worker is up."""
    deadline = time.monotonic() + timeout
    seen: set[object] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} while starting")
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                seen.add(json.loads(response.read()).get("worker"))
        except OSError:
            time.sleep(0.1)
        if len(seen) >= count:
            return
    raise RuntimeError(f"only workers {sorted(map(str, seen))} of {count} answered "
                       f"after {timeout:.0f} s")


def server_argv(plan: Plan, name: str, port: int) -> list[str]:
    """The command line of server ``name`` on ``port``."""
    if name in BASELINES:
        return [sys.executable, str(plan.script), "--serve-baseline", name, "--port", str(port)]
    argv = shlex.split(plan.relay_cmd.format(python=sys.executable, port=port))
    return argv + variant_args(plan.variants.get(name, ""))[1]


def variant_args(spec: str) -> tuple[Path | None, list[str]]:
    """A variant's ARGS: an optional leading ``@TREE`` (run the relay from that source
    tree, e.g. a worktree of an older commit, for a before/after in one run), then
    ``relay serve`` arguments."""
    words = shlex.split(spec)
    if words and words[0].startswith("@"):
        return Path(words[0][1:]).resolve(), words[1:]
    return None, words


def _core(plan: Plan, core: int) -> int | None:
    return core if plan.pin else None


def run_load(procs: Processes, plan: Plan, spec: dict[str, Any], tag: str) -> dict[str, Any]:
    """Run one load process on the load core and return its JSON record."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            str(plan.script),
            "--load-worker",
            json.dumps(spec),
            "--result",
            str(result_path),
        ]
        proc = procs.start(
            argv, _core(plan, LOAD_CORE), plan.log_dir / f"{tag}-load.log", plan.repo
        )
        try:
            proc.wait(float(spec["deadline"]) + 15.0)
        except subprocess.TimeoutExpired:
            log(f"{tag}: load process overran its deadline; stopping it")
        code = procs.stop(proc)
        if code != 0 or not result_path.exists():
            raise RuntimeError(f"load process failed (exit {code}); see {tag}-load.log")
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result


def with_server(
    procs: Processes, plan: Plan, name: str, tag: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Start a fresh server, run one load scenario against it, stop it."""
    port = free_port()
    argv = server_argv(plan, name, port)
    upstream = None
    if name not in BASELINES and plan.separate_upstream:
        upstream_port = free_port()
        upstream = procs.start(
            [sys.executable, "-m", "relay", "upstream", "--mode", "echo",
             "--port", str(upstream_port)],
            _core(plan, LOAD_CORE), plan.log_dir / f"{tag}-upstream.log", plan.repo,
        )
        wait_listening(upstream, upstream_port, READY_TIMEOUT)
        argv += ["--upstream-url", f"ws://127.0.0.1:{upstream_port}/v1/realtime"]
    tree = variant_args(plan.variants.get(name, ""))[0]
    server = procs.start(
        argv,
        _core(plan, SERVER_CORE),
        plan.log_dir / f"{tag}-server.log",
        tree or plan.repo,  # ``python -m relay`` imports the relay of its working dir
    )
    try:
        wait_listening(server, port, READY_TIMEOUT)
        workers = workers_in(argv)
        if workers > 1:
            wait_workers(server, port, workers, READY_TIMEOUT)
        time.sleep(SETTLE_SECONDS)
        spec = {**spec, "url": f"http://127.0.0.1:{port}", "server_pid": server.pid,
                "upstream_pid": upstream.pid if upstream is not None else None}
        result = run_load(procs, plan, spec, tag)
        if server.poll() is not None:
            result.setdefault("errors", []).append(f"server exited with {server.returncode}")
        return result
    finally:
        procs.stop(server)
        if upstream is not None:
            procs.stop(upstream)


def concurrent_run(procs: Processes, plan: Plan, name: str, n: int, round_: int) -> dict[str, Any]:
    """One server under N concurrent calls; an ``error`` record if it could not be run."""
    suffix = f", round {round_ + 1}/{plan.rounds}" if plan.rounds > 1 else ""
    log(f"{name}: {n} concurrent sessions, {plan.warmup:.0f} s warm-up + "
        f"{plan.duration:.0f} s{suffix}")
    spec = {
        "mode": "concurrent",
        "n": n,
        "warmup": plan.warmup,
        "duration": plan.duration,
        "datachannel": plan.datachannel,
        "own_connections": plan.own_connections,
        "spurt_frames": plan.spurt_frames,
        "load": plan.load,
        "deadline": plan.warmup + plan.duration + 3.0 * n + 60.0,
    }
    try:
        result = with_server(procs, plan, name, f"{name}-n{n}-r{round_ + 1}", spec)
    except RuntimeError as exc:
        log(f"{name} n={n}: {exc}")
        result = {"n": n, "error": str(exc)}
    return {**result, "round": round_}


def sequential_run(procs: Processes, plan: Plan, name: str) -> dict[str, Any]:
    """One server taking ``plan.calls`` calls one after another."""
    log(f"{name}: {plan.calls} sequential calls")
    spec = {
        "mode": "sequential",
        "calls": plan.calls,
        "call_audio": plan.call_audio,
        "datachannel": plan.datachannel,
        "load": plan.load,
        "deadline": plan.calls * (plan.call_audio + 3.0) + 60.0,
    }
    try:
        return with_server(procs, plan, name, f"{name}-sequential", spec)
    except RuntimeError as exc:
        log(f"{name} sequential: {exc}")
        return {"error": str(exc)}


def run_plan(plan: Plan) -> dict[str, dict[str, Any]]:
    """Benchmark every server of the plan; children are stopped whatever happens."""
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    if plan.pin:
        os.sched_setaffinity(0, {LOAD_CORE})  # keep this process off the server's core
    procs = Processes()
    results: dict[str, dict[str, Any]] = {
        name: {"runs": [], "sequential": None} for name in plan.servers
    }
    try:
        for round_ in range(plan.rounds):
            for n in plan.ns:
                for name in plan.servers:
                    results[name]["runs"].append(concurrent_run(procs, plan, name, n, round_))
        if plan.calls > 0:
            for name in plan.servers:
                results[name]["sequential"] = sequential_run(procs, plan, name)
        return results
    finally:
        procs.stop_all()
