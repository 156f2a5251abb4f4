"""Hostile HTTP requests against the real app: mutated real SDP offers, multipart forms,
session JSON, headers, query strings and client secrets. Every one gets a 2xx or a 4xx in
the API's JSON error shape, and no traceback reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from aiohttp import ClientSession, FormData
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.webrtc.peer import EVENTS_LABEL, create_peer, restrict_host_addresses

from ..conftest import LOOPBACK, base_url

#: CI runs the same examples every time (a fresh random draw must not block a landing);
#: a developer's run explores new ones.
CI = bool(os.environ.get("CI"))
FUZZ = settings(max_examples=25, deadline=None, database=None,
                derandomize=CI,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)
#: What an HTTP header value may hold (visible Latin-1, spaces).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=80)

#: Names a client library will put in a Content-Disposition.
part_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                   blacklist_characters='"\\'), min_size=1, max_size=8)


async def _real_offer() -> str:
    pc = create_peer(())
    pc.addTransceiver("audio")
    pc.createDataChannel(EVENTS_LABEL)
    description = await pc.createOffer()
    restrict_host_addresses(pc, LOOPBACK)
    await pc.setLocalDescription(description)
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.fixture(scope="module")
def real_offer() -> str:
    return asyncio.run(_real_offer())


@st.composite
def mutated(draw: st.DrawFn, offer: str) -> str:
    lines = offer.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "dup", "garble", "truncate", "insert"]))
        if how == "drop":
            del lines[at]
        elif how == "dup":
            lines.insert(at, lines[at])
        elif how == "garble":
            lines[at] = draw(st.text(max_size=40))
        elif how == "truncate":
            lines[at] = lines[at][:draw(st.integers(0, max(0, len(lines[at]) - 1)))]
        else:
            lines.insert(at, draw(st.sampled_from(["a=", "m=audio", "c=IN IP4", "a=sctp-port:"]))
                         + draw(st.text(max_size=20)))
        if not lines:
            lines = [""]
    return "\r\n".join(lines)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.name.startswith("relay")
           and (r.exc_info or r.levelno >= logging.ERROR)]
    assert not bad, [r.getMessage() for r in bad]


async def _check(response: Any, http: ClientSession, url: str) -> None:
    assert response.status < 500, await response.text()
    if response.status == 201:
        call_id = response.headers["Location"].rsplit("/", 1)[-1]
        async with http.post(f"{url}/v1/realtime/calls/{call_id}/hangup"):
            pass
    elif response.status >= 400:
        error = (await response.json())["error"]
        assert set(error) == {"message", "type", "code", "param"}


@FUZZ
@given(data=st.data())
async def test_fuzz_http_mutated_offers(relay, real_offer: str, data: st.DataObject,
                                        caplog: pytest.LogCaptureFixture) -> None:
    offer = data.draw(mutated(real_offer))
    url = base_url(relay)
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data=offer.encode("utf-8", "replace"),
                             headers={"Content-Type": "application/sdp"}) as r:
            await _check(r, http, url)
    _no_tracebacks(caplog)


@FUZZ
@given(parts=st.lists(st.tuples(st.sampled_from(["sdp", "session", "x"]) | part_names,
                                st.text(max_size=300) | json_values.map(json.dumps),
                                st.sampled_from(["application/sdp", "application/json",
                                                 "text/plain", "x/y"])), max_size=4))
async def test_fuzz_http_multipart_forms_and_sessions(relay, parts: list[tuple[str, Any, str]],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    form = FormData()
    for name, value, kind in parts:
        form.add_field(name, value, content_type=kind)
    url = base_url(relay)
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/calls", data=form) as r:
            await _check(r, http, url)
    _no_tracebacks(caplog)


@FUZZ
@given(authorization=header_text, content_type=header_text, origin=header_text,
       query=st.dictionaries(st.sampled_from(["dcid", "model", "call_id", "x"]), header_text,
                             max_size=3),
       path=st.sampled_from(["/v1/realtime/calls", "/v1/realtime/client_secrets",
                             "/v1/realtime", "/stats", "/v1/realtime/calls/rtc_x/hangup"]))
async def test_fuzz_http_headers_and_query_strings(
        relay_factory, authorization: str, content_type: str, origin: str,
        query: dict[str, str], path: str, caplog: pytest.LogCaptureFixture) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    url = base_url(server)
    headers = {"Authorization": authorization, "Content-Type": content_type, "Origin": origin}
    async with ClientSession() as http:
        method = http.get if path in ("/v1/realtime", "/stats") else http.post
        async with method(f"{url}{path}", params=query, headers=headers, data=b"v=0") as r:
            await _check(r, http, url)
            assert r.status in (400, 401, 404, 405, 415), r.status
    _no_tracebacks(caplog)


@FUZZ
@given(how=st.sampled_from(["truncate", "replace", "garbage"]), where=st.floats(0, 1),
       junk=st.text("AB.-_=", min_size=1, max_size=3), garbage=header_text)
async def test_fuzz_http_client_secrets(relay_factory, how: str, where: float, junk: str,
                                        garbage: str, caplog: pytest.LogCaptureFixture) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    url = base_url(server)
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/client_secrets",
                             headers={"Authorization": "Bearer sk-server"}, json={}) as r:
            key = (await r.json())["value"]
        at = 3 + int(where * (len(key) - 4))
        candidate = {"truncate": key[:at], "replace": key[:at] + junk + key[at + 1:],
                     "garbage": "ek_" + garbage}[how]
        if candidate == key:
            return
        async with http.post(f"{url}/v1/realtime/calls", data="v=0",
                             headers={"Authorization": f"Bearer {candidate}",
                                      "Content-Type": "application/sdp"}) as r:
            assert r.status == 401, await r.text()
            await _check(r, http, url)
    _no_tracebacks(caplog)


# ---------------------------------------------------------------- issue 25's classes

#: JSON nested to any depth, as arrays or objects (Python's parser recurses per level).
nested_json = st.tuples(st.integers(1, 3000), st.booleans()).map(
    lambda dk: "[" * dk[0] + "]" * dk[0] if dk[1] else '{"a":' * dk[0] + "1" + "}" * dk[0])
#: JSON text carrying a lone surrogate as an escape, somewhere a session would hold text.
surrogate_json = st.tuples(st.integers(0xD800, 0xDFFF), st.sampled_from(
    ['{"instructions":"%s"}', '{"type":"realtime","tools":[{"name":"%s"}]}',
     '{"session":{"instructions":"a%sb"}}', '{"%s":1}'])).map(
    lambda cw: cw[1] % f"\\u{cw[0]:04x}")
#: Bytes that are not UTF-8 (nor, often, anything else).
not_utf8 = st.binary(min_size=1, max_size=64).filter(lambda b: not _is_utf8(b))
bodies = nested_json.map(str.encode) | surrogate_json.map(str.encode) | not_utf8
#: Charsets as a client may name them: real, unknown, and codecs that are not text.
charsets = st.sampled_from(["utf-8", "UTF-8", "latin-1", "utf-16", "utf-32", "ascii", "idna",
                            "punycode", "utf-7", "cp1252", "bogus", "base64", "rot13", "zlib",
                            "hex", "uu", "x" * 100]) | st.text("abcdefghij-_0123456789",
                                                                  min_size=1, max_size=12)
#: Content-Encodings, known and not (the bodies are never in them).
encodings = st.sampled_from(["gzip", "deflate", "br", "zstd", "x-gzip", "identity",
                             "gzip, deflate", "compress", "x-nonsense"])


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _raw(port: int, request: bytes) -> int:
    """The status of the answer to ``request``, sent as is on a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(line.split()[1])


@FUZZ
@given(body=bodies, charset=st.none() | charsets, encoding=st.none() | encodings,
       where=st.sampled_from(["client_secrets", "sdp", "session part"]))
async def test_fuzz_http_bodies_deep_undecodable_and_mislabelled(
        relay_factory, real_offer: str, body: bytes, charset: str | None,
        encoding: str | None, where: str) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    kind = {"client_secrets": "application/json", "sdp": "application/sdp",
            "session part": "multipart/form-data; boundary=BB"}[where]
    if where == "session part":
        body = (b'--BB\r\nContent-Disposition: form-data; name="sdp"\r\n\r\n'
                + real_offer.encode() + b'\r\n--BB\r\nContent-Disposition: form-data; '
                b'name="session"\r\nContent-Type: application/json'
                + (f"; charset={charset}".encode() if charset else b"")
                + b"\r\n\r\n" + body + b"\r\n--BB--\r\n")
    elif charset:
        kind += f"; charset={charset}"
    path = "/v1/realtime/client_secrets" if where == "client_secrets" else "/v1/realtime/calls"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-server\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            + (f"Content-Encoding: {encoding}\r\n" if encoding else "") + "\r\n")
    status = await _raw(server.port, head.encode() + body)
    assert 400 <= status < 500 or (status == 200 and where == "client_secrets"), status


@FUZZ
@given(count=st.integers(0, 200), size=st.integers(0, 12_000),
       value=st.binary(max_size=16).filter(lambda b: b"\r" not in b and b"\n" not in b),
       name=st.sampled_from([b"X-A", b"Authorization", b"Content-Type", b"api-key", b"Origin"]),
       path=st.sampled_from([b"/v1/realtime/calls", b"/v1/realtime/client_secrets",
                             b"/v1/realtime?call_id=rtc_x", b"/stats", b"/healthz"]))
async def test_fuzz_http_header_sizes_counts_and_bytes(
        relay_factory, count: int, size: int, value: bytes, name: bytes, path: bytes) -> None:
    server = await relay_factory(relay_api_keys=("sk-server",))
    method = b"GET" if path.startswith((b"/stats", b"/healthz", b"/v1/realtime?")) else b"POST"
    filler = b"".join(b"X-%d: y\r\n" % i for i in range(count))
    long = name + b": " + value + b"a" * size + b"\r\n"
    status = await _raw(server.port, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + filler
                        + long + b"Content-Length: 3\r\nConnection: close\r\n\r\nv=0")
    assert status < 500, status
