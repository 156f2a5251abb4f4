"""Several relays as one, as real processes (``python -m relay serve``): two nodes sharing
a real Redis and a signing secret, and two workers sharing a supervisor's runtime
directory. A real WebRTC call made on one is inspected, joined by sideband and hung up
through the other; a per-key limit holds across both; a node killed with SIGKILL leaves
ids that answer 404; Redis going away costs only the routing to the other node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import ClientSession, WSMsgType
from aiohttp.client_ws import ClientWebSocketResponse

from relay.cluster.directory import OWNER_KEY
from relay.cluster.ids import owner_of

from ..support.offer import OfferPeer
from ..support.processes import stop
from ..support.redis import RedisServer, redis_server
from .test_cli import ROOT, free_port

KEY = "sk-cluster-e2e"
SECRET = "c" * 64
TTL = 2.0


@dataclass
class Node:
    """One ``relay serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or an OOM kill."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        stop(self.process, how, grace=15)


def start_node(log: Path, **env: str) -> Node:
    port = free_port()
    environment = {k: v for k, v in os.environ.items()
                   if k != "OPENAI_API_KEY" and not k.startswith("RELAY_")}
    environment.update({
        "RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port), "RELAY_API_KEYS": KEY,
        "RELAY_SIGNING_SECRET": SECRET, "RELAY_ICE_ADDRESSES": "127.0.0.1",
        "RELAY_LOCAL_MODE": "parrot", "RELAY_OWNER_TTL": str(TTL), **env})
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=environment,
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    node = Node(f"http://127.0.0.1:{port}", process, log, env)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{node.url}/healthz", timeout=1):
                return node
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "relay serve did not come up"
            time.sleep(0.1)


@pytest.fixture
def redis_db(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_server(tmp_path)


@pytest.fixture
def nodes(tmp_path: Path, redis_db: RedisServer) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B: one Redis, one signing secret, one call per client secret. A takes
    forwarded requests on an internal listener of its own, B on its public one."""
    internal = {"a": {"RELAY_INTERNAL_ADDRESS": f"127.0.0.1:{free_port()}"}, "b": {}}
    made = [start_node(tmp_path / f"{name}.log", RELAY_REDIS_URL=redis_db.url,
                       RELAY_MAX_CALLS_PER_KEY="1", **internal[name]) for name in "ab"]
    try:
        yield made[0], made[1]
    finally:
        for node in made:
            node.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two workers of one supervisor (as it would start them): no Redis, one runtime
    directory, an index each. (Each on its own public port: the shared port is the
    supervisor's business.)"""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    made = [start_node(tmp_path / f"w{index}.log", RELAY_WORKER_DIR=str(runtime),
                       RELAY_WORKER_INDEX=str(index)) for index in (0, 1)]
    try:
        yield made[0], made[1]
    finally:
        for node in made:
            node.stop()


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def request(method: str, url: str, key: str = KEY, content_type: str | None = None,
                  **kwargs: Any) -> tuple[int, Any]:
    headers = auth(key) | ({"Content-Type": content_type} if content_type else {})
    async with ClientSession() as http, http.request(method, url, headers=headers,
                                                     **kwargs) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, text


@asynccontextmanager
async def call_on(node: Node, key: str = KEY) -> AsyncIterator[tuple[str, OfferPeer]]:
    """A real WebRTC call made on ``node``: its id, and the connected peer."""
    async with OfferPeer() as peer:
        offer = await peer.offer()
        headers = {**auth(key), "Content-Type": "application/sdp"}
        async with ClientSession() as http, http.post(f"{node.url}/v1/realtime/calls",
                                                      data=offer, headers=headers) as r:
            assert r.status == 201, await r.text()
            answer, location = await r.text(), r.headers["Location"]
        await peer.accept(answer)
        assert (await peer.next_event())["type"] == "session.created"
        yield location.rsplit("/", 1)[-1], peer


async def create_status(node: Node, key: str) -> tuple[int, Any]:
    """The status of a call creation on ``node`` with ``key`` (no call is kept)."""
    async with OfferPeer() as peer:
        offer = await peer.offer()
        return await request("POST", f"{node.url}/v1/realtime/calls", key,
                             "application/sdp", data=offer)


async def next_event(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                event: dict[str, Any] = json.loads(message.data)
                if event["type"] == kind:
                    return event
        raise AssertionError(f"the sideband closed before {kind}")
    return await asyncio.wait_for(find(), 20)


async def follow_up_through(node: Node, call_id: str, peer: OfferPeer) -> None:
    """Describe, join by sideband, then hang up ``call_id`` through ``node``."""
    status, described = await request("GET", f"{node.url}/v1/realtime/calls/{call_id}")
    assert status == 200 and described["id"] == call_id, described
    async with ClientSession() as http, http.ws_connect(
            f"{node.url}/v1/realtime?call_id={call_id}", headers=auth()) as ws:
        await ws.send_str(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "joined through another relay"}}))
        updated = await next_event(ws, "session.updated")
        assert updated["session"]["instructions"] == "joined through another relay"
        # The client on the call hears the same session change on its data channel.
        await peer.session_matching(
            lambda s: s.get("instructions") == "joined through another relay")
        status, body = await request("POST", f"{node.url}/v1/realtime/calls/{call_id}/hangup")
        assert status == 200 and body is None
        # The call's end closes its sideband, through the forwarding relay too, with the
        # owner's close code and reason.
        closing = await asyncio.wait_for(ws.receive(), 10)
        while closing.type == WSMsgType.TEXT:
            closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == WSMsgType.CLOSE
        assert (closing.data, closing.extra) == (1000, "call ended: hangup")
    status, described = await request("GET", f"{node.url}/v1/realtime/calls/{call_id}")
    assert status == 200 and described["status"] == "closed", described
    assert described["close_reason"] == "hangup"
    status, body = await request("POST", f"{node.url}/v1/realtime/calls/{call_id}/hangup")
    assert status == 404 and body["error"]["code"] == "call_id_not_found"


async def test_cluster_a_call_made_on_one_node_is_followed_up_through_the_other(
        nodes: tuple[Node, Node], redis_db: RedisServer) -> None:
    a, b = nodes
    async with call_on(a) as (call_id, peer):
        await follow_up_through(b, call_id, peer)
    async with call_on(b) as (call_id, peer):
        await follow_up_through(a, call_id, peer)
    # A reaches B on B's public listener, B reaches A on A's internal one.
    client = redis.Redis.from_url(redis_db.url, decode_responses=True)
    try:
        addresses = {await client.get(key) async for key in client.scan_iter(OWNER_KEY + "*")}
    finally:
        await client.aclose()
    assert addresses == {b.url, "http://" + a.env["RELAY_INTERNAL_ADDRESS"]}


async def test_cluster_a_keys_calls_at_once_are_counted_across_nodes(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    status, minted = await request("POST", f"{a.url}/v1/realtime/client_secrets", json={})
    assert status == 200
    secret = minted["value"]
    async with call_on(a, secret) as (call_id, _):
        status, body = await create_status(b, secret)
        assert status == 429 and body["error"]["code"] == "too_many_calls", body
        status, _ = await request("POST", f"{b.url}/v1/realtime/calls/{call_id}/hangup")
        assert status == 200
    deadline = time.monotonic() + 10
    while (status := (await create_status(b, secret))[0]) == 429:
        assert time.monotonic() < deadline, "the ended call still counts"
        await asyncio.sleep(0.2)
    assert status == 201


async def test_cluster_a_killed_nodes_calls_are_404_and_the_other_goes_on(
        nodes: tuple[Node, Node], redis_db: RedisServer) -> None:
    a, b = nodes
    async with call_on(a) as (call_id, _):
        a.kill()
        status, body = await request("GET", f"{b.url}/v1/realtime/calls/{call_id}")
        assert status == 404 and body["error"]["code"] == "call_id_not_found"
        # Within the TTL its directory entry is gone too.
        client = redis.Redis.from_url(redis_db.url)
        try:
            deadline = time.monotonic() + TTL + 1
            while await client.exists(OWNER_KEY + str(owner_of(call_id))):
                assert time.monotonic() < deadline, "the dead node's entry outlived its TTL"
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        status, _ = await request("POST", f"{b.url}/v1/realtime/calls/{call_id}/hangup")
        assert status == 404
    async with call_on(b) as (own, peer):
        status, described = await request("GET", f"{b.url}/v1/realtime/calls/{own}")
        assert status == 200 and described["id"] == own


async def test_cluster_without_redis_a_node_answers_503_for_others_and_serves_its_own(
        nodes: tuple[Node, Node], redis_db: RedisServer) -> None:
    a, b = nodes
    async with call_on(a) as (theirs, _), call_on(b) as (own, _):
        redis_db.stop()
        status, body = await request("GET", f"{b.url}/v1/realtime/calls/{theirs}")
        assert status == 503 and body["error"]["code"] == "routing_unavailable", body
        async with ClientSession() as http, http.ws_connect(
                f"{b.url}/v1/realtime?call_id={own}", headers=auth()) as ws:
            await ws.send_str(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "still here"}}))
            assert (await next_event(ws, "session.updated"))["type"] == "session.updated"
        status, _ = await request("GET", f"{b.url}/v1/realtime/calls/{own}")
        assert status == 200
        # New calls too: the limits count in each process while Redis is away.
        async with call_on(b) as (another, _):
            status, _ = await request("POST", f"{b.url}/v1/realtime/calls/{another}/hangup")
            assert status == 200
        status, _ = await request("POST", f"{b.url}/v1/realtime/calls/{own}/hangup")
        assert status == 200
    assert b.process.poll() is None and a.process.poll() is None
    log = b.log.read_text()
    assert log.count("Redis unavailable") == 1, log


async def test_cluster_workers_of_one_supervisor_forward_through_their_sockets(
        workers: tuple[Node, Node], tmp_path: Path) -> None:
    first, second = workers
    sockets = sorted((tmp_path / "run").iterdir())
    assert [s.name for s in sockets] == ["w0000000.sock", "w0000001.sock"]
    assert all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in sockets)
    async with call_on(first) as (call_id, peer):
        assert owner_of(call_id) == "w0000000"
        await follow_up_through(second, call_id, peer)
    second.stop(signal.SIGINT)  # (Ctrl-C: the app's cleanup runs)
    # A worker that stopped took its socket with it.
    assert [s.name for s in (tmp_path / "run").iterdir()] == ["w0000000.sock"]


async def events_until(peer: OfferPeer, kind: str, seconds: float) -> dict[str, Any]:
    """The first ``kind`` event on ``peer``'s data channel within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        event = await peer.next_event(timeout=max(0.1, deadline - time.monotonic()))
        if event["type"] == kind:
            return event


async def test_cluster_a_draining_node_keeps_its_entry_and_every_client_hears_why(
        tmp_path: Path, redis_db: RedisServer) -> None:
    """SIGTERM on a node with live calls: while it drains, the other node still routes
    every one of its calls to it (its directory entry stays), it takes no new call, and
    at the drain timeout each client gets an ``error`` event saying why; it exits 0 and
    only then leaves the directory."""
    a, b = (start_node(tmp_path / f"{name}.log", RELAY_REDIS_URL=redis_db.url,
                       RELAY_DRAIN_TIMEOUT="3",
                       **({"RELAY_INTERNAL_ADDRESS": f"127.0.0.1:{free_port()}"}
                          if name == "a" else {}))
            for name in "ab")
    store = redis.Redis.from_url(redis_db.url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            calls = [await stack.enter_async_context(call_on(a)) for _ in range(4)]
            entry = OWNER_KEY + str(owner_of(calls[0][0]))
            a.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 2.5
            while (await request("GET", f"{a.url}/readyz"))[0] != 503:
                assert time.monotonic() < deadline, "the node did not start draining"
                await asyncio.sleep(0.05)
            status, body = await create_status(a, KEY)
            assert status == 503 and body["error"]["code"] == "relay_draining", body
            for call_id, _ in calls:  # routed through B to the draining owner
                status, described = await request("GET", f"{b.url}/v1/realtime/calls/{call_id}")
                assert status == 200 and described["status"] == "live", described
            assert await store.exists(entry)
            for _, peer in calls:
                error = await events_until(peer, "error", 10)
                assert error["error"]["code"] == "server_shutting_down", error
            assert await asyncio.to_thread(a.process.wait, 20) == 0
        assert not await store.exists(entry)  # unregistered on the way out
        status, body = await request("GET", f"{b.url}/v1/realtime/calls/{calls[0][0]}")
        assert status == 404 and body["error"]["code"] == "call_id_not_found"
    finally:
        await store.aclose()
        for node in (a, b):
            node.stop()
