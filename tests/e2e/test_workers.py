"""``relay serve --workers 2`` as a user runs it: two worker processes on one port, a call
through it, a killed worker restarted, a clean stop; and what the supervisor refuses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

from relay.client import CallClient, PcmSource

from ..conftest import LOOPBACK
from ..support.processes import stop
from .test_call_e2e import rms
from .test_cli import free_port, start, wait_healthy
from .test_udp_ports import candidate_ports, free_ports

#: Workers take seconds to import and start on a busy machine.
START_SECONDS = 60.0


def health(url: str) -> dict[str, object]:
    """``/healthz`` on a fresh connection (so the kernel may pick either worker)."""
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def worker_pids(url: str, count: int, tries: int = 400,
                seconds: float = START_SECONDS) -> dict[int, int]:
    """Worker index → PID, from fresh connections until ``count`` workers answered: at
    least ``tries`` connections, and for up to ``seconds`` (a worker still starting has
    not bound the port yet, so every connection goes to the others)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    attempts = 0
    while True:
        body = health(url)
        seen[int(str(body["worker"]))] = int(str(body["pid"]))
        if len(seen) == count:
            return seen
        attempts += 1
        if attempts >= tries:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{attempts} connections reached only workers {seen}")
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if alive(pid)]
        time.sleep(0.1)


def worker_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    [value] = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"RELAY_WORKER_DIR=")]
    return Path(value.decode())


def output(process: subprocess.Popen[bytes]) -> str:
    return process.stdout.read().decode() if process.stdout else ""


def stop_by_pid(process: subprocess.Popen[bytes], *pids: int) -> None:
    for pid in (process.pid, *pids):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


async def call_through(url: str, speech: bytes) -> str:
    """A call with audio both ways through ``url``, hung up on its own connection; returns
    the SDP answer."""
    answers: list[str] = []

    def keep(answer: str) -> str:
        answers.append(answer)
        return answer

    source = PcmSource()
    client = CallClient(url, source, ice_addresses=LOOPBACK, edit_answer=keep)
    try:
        await client.connect()
        await client.wait_for("session.created")
        source.play(speech[: 24000 * 2])
        for _ in range(100):
            if rms(bytes(client.received)) > 300:
                break
            await asyncio.sleep(0.05)
        assert rms(bytes(client.received)) > 300, "no audio came back"
        assert await client.hangup() == 200
    finally:
        await client.close()
    return answers[0]


def start_two_workers(drain_timeout: float) -> tuple[str, int, subprocess.Popen[bytes]]:
    """``relay serve --workers 2`` (echo) on a free port: its URL, the first of its two
    UDP ports, and the supervisor's process."""
    port, udp = free_port(), free_ports(2)
    process = start("serve", "--workers", "2", "--port", str(port), "--ice-address",
                    "127.0.0.1", "--local-mode", "echo", "--udp-ports", str(udp),
                    "--drain-timeout", str(drain_timeout))
    return f"http://127.0.0.1:{port}", udp, process


async def test_workers_share_the_port_restart_a_killed_one_and_stop_cleanly(
        speech: bytes) -> None:
    url, udp, process = start_two_workers(drain_timeout=2)
    pids: dict[int, int] = {}
    try:
        await asyncio.to_thread(wait_healthy, url, process, START_SECONDS)
        pids = await asyncio.to_thread(worker_pids, url, 2)
        assert len(set(pids.values())) == 2 and process.pid not in pids.values()
        directory = worker_dir(pids[0])
        assert directory == worker_dir(pids[1])
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

        # A call through the shared port: its ICE is on the answering worker's own port.
        answer = await call_through(url, speech)
        assert set(candidate_ports(answer)) <= {udp, udp + 1}

        # A worker killed is restarted, under the same index.
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                restarted = await asyncio.to_thread(worker_pids, url, 2, 50, 0.0)
            except (AssertionError, OSError):
                restarted = {}
            if restarted and restarted[0] != pids[0]:
                break
            assert time.monotonic() < deadline, "worker 0 was not restarted"
            await asyncio.sleep(0.2)
        assert restarted[1] == pids[1] and not alive(pids[0])
        pids[2] = restarted[0]
        await call_through(url, speech)  # both workers still take calls (whichever answers)

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        wait_gone(list(pids.values()), 5)
        assert not directory.exists()
    finally:
        if process.poll() is None:
            stop_by_pid(process, *pids.values())
    log = output(process)
    assert f"worker 0 (pid {pids[0]}) was killed by SIGKILL; restarting it in 0.5 s" in log
    assert log.count("SIGTERM: draining, taking no new calls") == 2
    assert "supervisor: every worker stopped" in log
    assert f"worker 1 relay.server.serve: relay listening on {url}/" in log  # lines name it


def test_workers_die_with_their_supervisor() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start("serve", "--workers", "2", "--port", str(port), "--drain-timeout", "1")
    pids: dict[int, int] = {}
    try:
        wait_healthy(url, process, START_SECONDS)
        pids = worker_pids(url, 2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        wait_gone(list(pids.values()), 15)  # no orphans: they see their stdin close
    finally:
        stop_by_pid(process, *pids.values())


def test_workers_refuse_a_port_that_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start("serve", "--workers", "2", "--port", str(port))
        try:
            assert process.wait(30) == 2
        finally:
            stop(process, signal.SIGKILL)
    assert re.search(rf"relay: cannot listen on 127\.0\.0\.1:{port}: .*in use", output(process))


def test_workers_stop_when_a_setting_cannot_work_in_them() -> None:
    # The agent is imported in each worker: none can start, and restarting cannot help.
    process = start("serve", "--workers", "2", "--port", str(free_port()),
                    "--agent", "no_such_module_here:agent")
    try:
        assert process.wait(START_SECONDS) == 1
    finally:
        stop(process, signal.SIGKILL)
    log = output(process)
    assert "exited with code 2: a setting it cannot work with" in log
    assert "restarting" not in log


def fresh_request(url: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    """One request on a fresh connection (the kernel picks the worker), its status and JSON."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body else {}
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


async def test_workers_answer_a_calls_follow_ups_whichever_worker_takes_them() -> None:
    """Hangup and inspection land on either worker (fresh connections, no affinity): the
    one that does not own the call forwards them to the one that does."""
    url, _, process = start_two_workers(drain_timeout=0)
    pids: dict[int, int] = {}
    source = PcmSource()
    client = CallClient(url, source, ice_addresses=LOOPBACK)
    try:
        await asyncio.to_thread(wait_healthy, url, process, START_SECONDS)
        pids = await asyncio.to_thread(worker_pids, url, 2)
        await client.connect()
        await client.wait_for("session.created")
        call = f"{url}/v1/realtime/calls/{client.call_id}"
        # 24 fresh connections: all on the owner by chance would be 1 in 2**24.
        for _ in range(24):
            status, body = await asyncio.to_thread(fresh_request, call)
            assert (status, body.get("id")) == (200, client.call_id), body
        status, _ = await asyncio.to_thread(fresh_request, f"{call}/hangup", "POST")
        assert status == 200
        deadline = time.monotonic() + 10
        while True:
            status, body = await asyncio.to_thread(fresh_request, call)
            assert status == 200, body
            if body.get("status") == "closed":
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        for _ in range(8):  # an id no worker owns is 404 from either
            status, body = await asyncio.to_thread(
                fresh_request, f"{url}/v1/realtime/calls/rtc_u1_{'x' * 32}")
            assert status == 404 and body["error"]["code"] == "call_id_not_found", body
    finally:
        await client.close()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        finally:
            stop_by_pid(process, *pids.values())


async def test_workers_route_a_gpt_live_sessions_sidebands_and_controls_to_its_owner() -> None:
    """A GPT-Live session's sideband, view and hangup reach its owner from either worker."""
    from openai import AsyncOpenAI

    from ..support.offer import OfferPeer

    url, _, process = start_two_workers(drain_timeout=0)
    pids: dict[int, int] = {}
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test")
    try:
        await asyncio.to_thread(wait_healthy, url, process, START_SECONDS)
        pids = await asyncio.to_thread(worker_pids, url, 2)
        async with OfferPeer() as peer:
            created = await client.live.create(
                session={"model": "gpt-live-1"},
                transport={"type": "webrtc", "sdp": await peer.offer()})
            session_id = created.session.id
            await peer.accept(created.transport.sdp)
            assert (await peer.next_event())["type"] == "session.started"
            # Eight fresh sidebands: all on the owner by chance would be 1 in 2**8.
            for _ in range(8):
                async with client.live.sideband.connect(session_id=session_id) as sideband:
                    event = await asyncio.wait_for(sideband.recv(), 10)
                    assert event.type in ("session.input_audio.append",
                                          "session.output_audio.delta"), event
            view = f"{url}/v1/live/sessions/{session_id}"
            for _ in range(16):
                status, body = await asyncio.to_thread(fresh_request, view)
                assert (status, body.get("object")) == (200, "live.session"), body
            status, _ = await asyncio.to_thread(fresh_request, f"{view}/hangup", "POST")
            assert status == 200
            for _ in range(8):
                status, body = await asyncio.to_thread(fresh_request, f"{view}/hangup", "POST")
                assert (status, body["error"]["code"]) == (404, "session_not_found"), body
    finally:
        await client.close()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        finally:
            stop_by_pid(process, *pids.values())
