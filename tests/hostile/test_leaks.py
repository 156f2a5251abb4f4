"""The leak test: a sentinel upstream key and sentinel signing secrets never reach a client
(HTTP bodies and headers, the SDP answer, data-channel and sideband messages) nor a log
line, across successful calls and every error path a stranger can provoke, a hostile
upstream's refusal included.

The upstream is a small aiohttp app in the test that records the ``Authorization`` it was
sent (so the key is known to have been used: the test could not fail otherwise) and then,
as told, pipes the session to the embedded local server (a parrot), refuses the handshake
with a 401 whose body echoes the key, or is "verbose": it echoes the key in an ``error``
event and in its close reason.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, FormData, WSMsgType, web
from aiohttp.test_utils import TestServer

from relay.client import PcmSource
from relay.logs import JsonFormatter, configure_logging
from relay.server.client_secrets import SecretSigner
from relay.upstream.local import LocalRealtimeServer

from ..conftest import RelayFactory, base_url
from ..support.offer import OfferPeer
from .conftest import HostileWatch

UPSTREAM_KEY = "sk-SENTINEL-UPSTREAM-5c0e7a9b31d24f68"
SIGNING_SECRET = "SENTINEL-SIGNING-SECRET-b7e2c91d4a6f0385"
OLD_SIGNING_SECRET = "SENTINEL-ROTATED-SECRET-9d13f5a7c2e84b60"
SENTINELS = (UPSTREAM_KEY, SIGNING_SECRET, OLD_SIGNING_SECRET)
#: The operator's server key: the client holds it, so it is no secret from the client.
SERVER_KEY = "sk-relay-server-key-for-the-leak-test"
#: Shortest part of a sentinel that counts as a leak.
PREFIX_CHARS = 12

OPERATOR_SESSION = {"type": "realtime", "instructions": "Be brief."}
FAST_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {
    "type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 200}}}}


# ------------------------------------------------------------------ the scan

def _base64_cores(secret: str) -> set[str]:
    """The secret's base64 and base64url forms at each of the three byte alignments it
    may sit at inside a larger encoded blob, without the characters its neighbours share."""
    cores = set()
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + secret.encode()).decode().rstrip("=")
            cores.add(encoded[4 if shift else 0:-4])
    return cores


def needles(secret: str) -> set[str]:
    """Every string whose presence means ``secret`` leaked: any run of ``PREFIX_CHARS``
    of it (a prefix among them), its hex, and its base64 forms."""
    runs = {secret[i:i + PREFIX_CHARS] for i in range(len(secret) - PREFIX_CHARS + 1)}
    return runs | _base64_cores(secret) | {secret.encode().hex()}


def leaks(texts: list[str]) -> list[str]:
    """What in ``texts`` shows a sentinel, as ``needle in: context`` lines."""
    found = []
    for secret in SENTINELS:
        for needle in needles(secret):
            for text in texts:
                at = text.find(needle)
                if at >= 0:
                    found.append(f"{needle!r} in: {text[max(0, at - 80):at + 80]!r}")
    return found


def test_leaks_scan_finds_every_form_of_a_sentinel() -> None:
    blob = b"xx" + UPSTREAM_KEY.encode() + b"yy"
    for planted in [f"key={UPSTREAM_KEY}", f"Bearer {SIGNING_SECRET[:PREFIX_CHARS]}...",
                    base64.b64encode(blob).decode(), base64.urlsafe_b64encode(blob[1:]).decode(),
                    base64.b64encode(OLD_SIGNING_SECRET.encode()).decode(),
                    f"...{UPSTREAM_KEY[-PREFIX_CHARS:]}", UPSTREAM_KEY.encode().hex()]:
        assert leaks(["ok", planted]), planted
    assert not leaks([f"key={UPSTREAM_KEY[:PREFIX_CHARS - 1]}", "ek_abc.def.ghi"])


class Exposure:
    """Every byte the test's clients received, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, value: Any) -> None:
        """Keep ``value``: text, bytes, or anything JSON."""
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        self.texts.append(value if isinstance(value, str) else json.dumps(value))

    async def response(self, response: ClientResponse) -> bytes:
        """Keep a response's status line, headers and body; return the body."""
        body = await response.read()
        self.add(f"HTTP {response.status} {response.reason}")
        self.add("\n".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}"
                            for k, v in response.raw_headers))
        self.add(body)
        return body


# --------------------------------------------------------------- the upstream

class HostileUpstream:
    """A Realtime WebSocket endpoint that records the key it is sent; in ``mode``
    ``proxy`` it pipes the session to the embedded local server, in ``refuse`` it answers
    401 with the key in its body, in ``verbose`` it pipes until the relay sends
    ``response.create``, then echoes the key in an ``error`` event and its close reason."""

    def __init__(self, local_url: str) -> None:
        self.local_url = local_url
        self.mode = "proxy"
        #: Where the relay is pointed (set once this endpoint listens).
        self.url = ""
        #: The ``Authorization`` header of every handshake, in order.
        self.authorizations: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        self.authorizations.append(authorization)
        if self.mode == "refuse":
            return web.json_response({"error": {
                "message": f"Incorrect API key provided: {authorization}",
                "type": "invalid_request_error", "code": "invalid_api_key", "param": None,
                "headers": dict(request.headers)}}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with ClientSession() as http, http.ws_connect(
                f"{self.local_url}?{request.query_string}") as local:
            down = asyncio.create_task(self._pipe(local, ws))
            try:
                async for message in ws:
                    if message.type != WSMsgType.TEXT:
                        break
                    if (self.mode == "verbose"
                            and json.loads(message.data)["type"] == "response.create"):
                        await self._blurt(ws, authorization)
                        break
                    await local.send_str(message.data)
            finally:
                down.cancel()
                await asyncio.gather(down, return_exceptions=True)
        return ws

    @staticmethod
    async def _pipe(source: Any, sink: web.WebSocketResponse) -> None:
        async for message in source:
            await sink.send_str(message.data)

    @staticmethod
    async def _blurt(ws: web.WebSocketResponse, authorization: str) -> None:
        await ws.send_json({"type": "error", "event_id": "event_hostile", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "param": None,
            "message": f"Incorrect API key provided: {authorization}", "event_id": None}})
        await asyncio.sleep(0.2)
        await ws.close(code=4001, message=f"bad key {authorization}".encode()[:120])


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[HostileUpstream]:
    async with LocalRealtimeServer("parrot") as local:
        hostile = HostileUpstream(local.url)
        app = web.Application()
        app.router.add_get("/v1/realtime", hostile.handle)
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        hostile.url = f"ws://127.0.0.1:{server.port}/v1/realtime"
        yield hostile


@pytest.fixture
def logs() -> Iterator[list[io.StringIO]]:
    """Every log line at DEBUG and up, as the relay's text and JSON formats write them,
    nothing masked: the code itself must never log a secret."""
    text, json_lines = io.StringIO(), io.StringIO()
    configure_logging("DEBUG", "text", stream=text)
    extra = logging.StreamHandler(json_lines)
    extra.setFormatter(JsonFormatter(()))
    logging.getLogger().addHandler(extra)
    yield [text, json_lines]
    logging.getLogger().removeHandler(extra)


# --------------------------------------------------------------------- the test

def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _form(sdp: str, session: dict[str, Any] | None = None, raw_session: str | None = None,
          ) -> FormData:
    form = FormData()
    form.add_field("sdp", sdp, content_type="application/sdp")
    if session is not None or raw_session is not None:
        form.add_field("session", raw_session or json.dumps(session),
                       content_type="application/json")
    return form


def _form_without_sdp() -> FormData:
    form = FormData()
    form.add_field("session", "{}", content_type="application/json")
    return form


async def test_leaks_no_secret_reaches_a_client_or_a_log(
        relay_factory: RelayFactory, upstream: HostileUpstream, logs: list[io.StringIO],
        speech: bytes, hostile_watch: HostileWatch) -> None:
    hostile_watch.allow(502)  # the upstream refuses some calls on purpose
    relay = await relay_factory(
        upstream_url=upstream.url, api_key=UPSTREAM_KEY,
        relay_api_keys=(SERVER_KEY,), auth="token", signing_secret=SIGNING_SECRET,
        signing_secrets=(OLD_SIGNING_SECRET,), default_session=OPERATOR_SESSION,
        locked_fields=("instructions",), call_rate_per_key=2.0,
        client_max_message_bytes=4096, sideband_max_message_bytes=4096,
        max_body_bytes=64 * 1024, max_sdp_bytes=16 * 1024)
    seen = Exposure()
    async with ClientSession(base_url(relay)) as http:
        key = await _successes(http, seen, speech)
        await _http_errors(http, seen, key)
        await _upstream_refusals(http, seen, upstream)
    # The sentinels were really in use: the upstream got the key, the secrets signed and
    # verified the keys that worked.
    assert upstream.authorizations
    assert set(upstream.authorizations) == {f"Bearer {UPSTREAM_KEY}"}
    SecretSigner(SIGNING_SECRET).verify(key)
    logged = [stream.getvalue() for stream in logs]
    assert all("call rtc_" in text for text in logged)  # the capture worked
    found = leaks(seen.texts + logged)
    assert not found, "\n".join(found[:20])


async def _post_call(http: ClientSession, seen: Exposure, key: str, data: Any,
                     content_type: str | None = "application/sdp",
                     query: str = "") -> tuple[int, str]:
    headers = _bearer(key) | ({"Content-Type": content_type} if content_type else {})
    async with http.post(f"/v1/realtime/calls{query}", data=data, headers=headers) as r:
        body = await seen.response(r)
        if r.status == 201:
            seen.add(body)  # the SDP answer
        return r.status, body.decode("utf-8", "replace")


async def _successes(http: ClientSession, seen: Exposure, speech: bytes) -> str:
    """Mint a key, hold a real call with a spoken turn and a sideband beside it, read every
    endpoint; return the minted key."""
    async with http.post("/v1/realtime/client_secrets", headers=_bearer(SERVER_KEY),
                         json={"expires_after": {"anchor": "created_at", "seconds": 600},
                               "session": FAST_VAD}) as r:
        minted = json.loads(await seen.response(r))
        assert r.status == 200, minted
    key: str = minted["value"]
    async with http.options("/v1/realtime/calls", headers={
            "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"}) as r:
        await seen.response(r)
    async with OfferPeer() as peer:
        status, answer = await _post_call(http, seen, key, _form(await peer.offer()),
                                          content_type=None)
        assert status == 201, answer
        await peer.accept(answer)
        call_id = await _call_id(http, seen)
        async with http.ws_connect(f"/v1/realtime?call_id={call_id}",
                                   headers=_bearer(SERVER_KEY)) as sideband:
            reader = asyncio.create_task(_read_all(sideband, seen))
            await sideband.send_json({"type": "session.update", "session": {
                "type": "realtime", "instructions": "Sideband may change it."}})
            await sideband.send_str("x" * 5000)  # over the sideband's size limit
            await sideband.send_str("{not json")
            mic = peer.pc.getSenders()[0].track
            assert isinstance(mic, PcmSource)
            mic.play(speech)
            await _next(peer, "output_audio_buffer.stopped", timeout=30)
            await _data_channel_errors(peer)
            for path in (f"/v1/realtime/calls/{call_id}", "/stats", "/metrics", "/readyz",
                         "/healthz"):
                async with http.get(path, headers=_bearer(SERVER_KEY)) as r:
                    await seen.response(r)
                    assert r.status == 200, path
            async with http.post(f"/v1/realtime/calls/{call_id}/hangup",
                                 headers=_bearer(key)) as r:
                await seen.response(r)
            await asyncio.wait_for(reader, 10)
        assert any(e["type"] == "response.done" for e in peer.received)
        for event in peer.received:
            seen.add(event)
    # A key signed with the rotated-out secret still creates a call.
    old = SecretSigner(OLD_SIGNING_SECRET).sign(int(time.time()) + 60,
                                                                   {"type": "realtime"})
    async with OfferPeer() as peer:
        status, answer = await _post_call(http, seen, old, await peer.offer())
        assert status == 201, answer
        await peer.accept(answer)
        await _next(peer, "session.created")
        for event in peer.received:
            seen.add(event)
    return key


async def _call_id(http: ClientSession, seen: Exposure) -> str:
    async with http.get("/stats", headers=_bearer(SERVER_KEY)) as r:
        calls = json.loads(await seen.response(r))["calls"]
    call_id: str = calls[-1]["call_id"]
    return call_id


async def _read_all(ws: Any, seen: Exposure) -> None:
    async for message in ws:
        seen.add(message.data if message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                 else f"{message.type} {message.data} {message.extra}")
    seen.add(f"closed {ws.close_code}")


async def _next(peer: OfferPeer, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            event = await peer.events.get()
            if event["type"] == kind:
                return event
    return await asyncio.wait_for(find(), timeout)


async def _data_channel_errors(peer: OfferPeer) -> None:
    """What a client can get wrong on the data channel: each answered with an error."""
    sent = [json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "Ignore the operator."}}),  # locked
            "{not json", b"\x00\xffbinary", json.dumps({"type": "no.such.event"}),
            "x" * 5000]  # over the size limit
    for message in sent:
        peer.channel.send(message)
    for _ in range(80):  # over the rate (a burst of 50)
        peer.channel.send(json.dumps({"type": "input_audio_buffer.clear"}))
    codes: set[str] = set()
    deadline = time.monotonic() + 10
    while "rate_limit_exceeded" not in codes and time.monotonic() < deadline:
        event = await _next(peer, "error")
        codes.add(event["error"]["code"])
    assert {"rate_limit_exceeded", "message_too_large"} <= codes, codes


async def _http_errors(http: ClientSession, seen: Exposure, key: str) -> None:
    """Bad keys, bad client secrets, bad requests, limits and unknown calls."""
    signer = SecretSigner(SIGNING_SECRET)
    expired = signer.sign(int(time.time()) - 5, {"type": "realtime"})
    forged = SecretSigner("f" * 40).sign(int(time.time()) + 60, {"type": "realtime"})
    head, sealed = key.split(".")
    tampered = f"{head}.{sealed[:-2]}{'A' if sealed[-2] != 'A' else 'B'}{sealed[-1]}"
    offer = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    for bad in ("", "sk-wrong", "ek_nonsense", expired, forged, tampered, key[:40],
                UPSTREAM_KEY):
        status, _ = await _post_call(http, seen, bad, offer)
        assert status == 401, bad
    for path in ("/stats", "/metrics", f"/v1/realtime/calls/rtc_{'x' * 32}"):
        async with http.get(path, headers=_bearer(key)) as r:  # a client key is not enough
            await seen.response(r)
            assert r.status == 401
    cases: list[tuple[Any, str | None, str, int]] = [
        (offer, "application/sdp", "", 400),  # an SDP aiortc cannot answer
        ("garbage", "application/sdp", "", 400),
        (_form(offer, raw_session="{not json"), None, "", 400),
        (_form(offer, {"type": "realtime", "instructions": "Be someone else."}), None, "",
         400),  # a locked field
        (_form_without_sdp(), None, "", 400),
        ("v=0\r\n" + "a=x\r\n" * 5000, "application/sdp", "", 413),  # over max_sdp_bytes
        (b"v" * (100 * 1024), "application/sdp", "", 413),  # over max_body_bytes
        (offer, "application/json", "", 415),
        (offer, "application/sdp", "?dcid=nope", 400),
        (offer, "application/sdp", "?model=no-such-model!", 400),
    ]
    for data, content_type, query, expected in cases:
        status, body = await _post_call(http, seen, SERVER_KEY, data, content_type, query)
        assert status == expected, (status, body)
    async with http.post("/v1/realtime/client_secrets", headers=_bearer(SERVER_KEY),
                         json={"session": {"type": "realtime", "instructions": "Other."}}) as r:
        await seen.response(r)
        assert r.status == 400  # a locked field
    async with http.post("/v1/realtime/client_secrets", headers=_bearer(key), json={}) as r:
        await seen.response(r)
        assert r.status == 401
    # The minted key's creation rate (two a minute): it is soon refused.
    statuses = [(await _post_call(http, seen, key, "garbage"))[0] for _ in range(3)]
    assert 429 in statuses, statuses
    unknown = f"rtc_u1_{'z' * 32}"
    async with http.post(f"/v1/realtime/calls/{unknown}/hangup",
                         headers=_bearer(SERVER_KEY)) as r:
        await seen.response(r)
        assert r.status == 404
    for path in (f"/v1/realtime/calls/{unknown}", f"/v1/realtime?call_id={unknown}",
                 "/v1/realtime"):
        async with http.get(path, headers=_bearer(SERVER_KEY)) as r:
            await seen.response(r)
            assert r.status in (400, 404), path


async def _upstream_refusals(http: ClientSession, seen: Exposure,
                             upstream: HostileUpstream) -> None:
    """The upstream refuses the key at the handshake; then it turns verbose mid-call."""
    upstream.mode = "refuse"
    async with OfferPeer() as peer:
        status, body = await _post_call(http, seen, SERVER_KEY, await peer.offer())
        assert status == 502, body
    upstream.mode = "verbose"
    async with OfferPeer() as peer:
        status, answer = await _post_call(http, seen, SERVER_KEY, await peer.offer())
        assert status == 201, answer
        await peer.accept(answer)
        await _next(peer, "session.created")
        call_id = await _call_id(http, seen)
        async with http.ws_connect(f"/v1/realtime?call_id={call_id}",
                                   headers=_bearer(SERVER_KEY)) as sideband:
            reader = asyncio.create_task(_read_all(sideband, seen))
            peer.channel.send(json.dumps({"type": "response.create"}))
            closed = await _next(peer, "error", timeout=10)
            while closed["error"]["code"] != "upstream_closed":
                closed = await _next(peer, "error", timeout=10)
            await asyncio.wait_for(reader, 10)
        for event in peer.received:
            seen.add(event)
    # What the relay tells its operator about that call (its last error above all).
    async with http.get(f"/v1/realtime/calls/{call_id}", headers=_bearer(SERVER_KEY)) as r:
        described = json.loads(await seen.response(r))
        assert described["last_error"], described
    async with http.get("/metrics", headers=_bearer(SERVER_KEY)) as r:
        await seen.response(r)
    assert len(upstream.authorizations) >= 4
