"""``POST /v1/realtime/calls`` as multipart/form-data: every shape of part a client sends.

The bodies are written byte for byte, so each part's headers are exactly the ones named.
On the server side aiohttp would hand a part over as a ``str`` (no Content-Type, or a
``text/*`` one), as ``bytes`` (any other Content-Type, no filename: what curl's
``-F 'sdp=<offer.sdp;type=application/sdp'`` and openai-python send) or as a file (a
filename: a browser's Blob); all of them must reach the call as text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from ..conftest import base_url, live_calls
from ..support.offer import OfferPeer

BOUNDARY = "------------------------d74496d66958873e"
SESSION = {"type": "realtime", "instructions": "Café au lait, s'il vous plaît.",
           "audio": {"output": {"voice": "verse"}}}

Part = tuple[dict[str, str], bytes]


def part(name: str, body: bytes, content_type: str | None = None,
         filename: str | None = None, **headers: str) -> Part:
    """One form part: its Content-Disposition, its Content-Type if any, and its body."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = {"Content-Disposition": disposition}
    if content_type is not None:
        head["Content-Type"] = content_type
    head.update(headers)
    return head, body


def multipart(*parts: Part) -> bytes:
    """A multipart/form-data body with ``BOUNDARY``, as curl lays it out."""
    out = b""
    for headers, body in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        out += b"\r\n" + body + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def post_form(server: TestServer, body: bytes,
                    content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
                    ) -> tuple[int, str, Any]:
    """Post ``body``; return the status, the body as text, and the ``Location`` header."""
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/calls", data=body,
                             headers={"Content-Type": content_type}) as response:
            return response.status, await response.text(), response.headers.get("Location")


async def hangup(server: TestServer, location: str) -> None:
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}{location}/hangup") as response:
            assert response.status == 200


async def test_multipart_curl_form_with_typed_parts_creates_the_call(relay) -> None:
    # The API reference's example:
    #   curl -X POST https://api.openai.com/v1/realtime/calls \
    #     -H "Authorization: Bearer $OPENAI_API_KEY" \
    #     -F "sdp=<offer.sdp;type=application/sdp" \
    #     -F 'session={"type":"realtime","model":"gpt-realtime"};type=application/json'
    async with OfferPeer() as peer:
        sdp = await peer.offer()
        body = multipart(
            part("sdp", sdp.encode(), "application/sdp"),
            part("session", json.dumps(SESSION).encode(), "application/json"),
        )
        status, answer, location = await post_form(relay, body)
        assert status == 201, answer
        assert answer.startswith("v=0")
        await peer.accept(answer)
        session = await peer.session_matching(
            lambda s: s.get("instructions") == SESSION["instructions"])
        assert session["audio"]["output"]["voice"] == "verse"
    await hangup(relay, location)
    assert live_calls(relay) == 0


def session_json(charset: str = "utf-8") -> bytes:
    return json.dumps(SESSION, ensure_ascii=False).encode(charset)


#: Forms that must create the call, by the shape aiohttp would give their parts.
GOOD_FORMS = {
    "untyped parts (str)": lambda sdp: (
        part("sdp", sdp.encode()), part("session", session_json())),
    "text/plain with a charset (str, decoded by that charset)": lambda sdp: (
        part("sdp", sdp.encode(), "text/plain; charset=utf-8"),
        part("session", session_json("latin-1"), "text/plain; charset=latin-1")),
    "typed parts with a charset (bytes)": lambda sdp: (
        part("sdp", sdp.encode(), "application/sdp; charset=utf-8"),
        part("session", session_json("iso-8859-1"), "application/json; charset=iso-8859-1")),
    "files with filenames, one untyped (a browser's Blob)": lambda sdp: (
        part("sdp", sdp.encode(), "application/sdp", filename="offer.sdp"),
        part("session", session_json(), filename="blob")),
    "a part in base64 and an unknown extra part": lambda sdp: (
        part("note", b"ignored", "text/plain"),
        part("sdp", sdp.encode(), "application/sdp"),
        part("session", base64.b64encode(session_json()), "application/json",
             **{"Content-Transfer-Encoding": "base64"})),
}


@pytest.mark.parametrize("shape", GOOD_FORMS)
async def test_multipart_every_part_shape_reaches_the_call(relay, shape: str) -> None:
    async with OfferPeer() as peer:
        body = multipart(*GOOD_FORMS[shape](await peer.offer()))
        status, answer, location = await post_form(relay, body)
        assert status == 201, answer
        await peer.accept(answer)
        session = await peer.session_matching(
            lambda s: s.get("instructions") == SESSION["instructions"])
        assert session["audio"]["output"]["voice"] == "verse"
    await hangup(relay, location)


SDP = part("sdp", b"v=0\r\n", "application/sdp")
NESTED = (b"--inner\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--inner--")

#: Forms that must be refused with a 400: (body, code, param).
BAD_FORMS: dict[str, tuple[bytes, str, str | None]] = {
    "invalid UTF-8 in an untyped part": (
        multipart(SDP, part("session", b'{"instructions": "caf\xe9"}')),
        "invalid_value", "session"),
    "bytes outside the part's charset": (
        multipart(part("sdp", "v=0 é".encode(), "application/sdp; charset=us-ascii")),
        "invalid_value", "sdp"),
    "an unknown charset": (
        multipart(part("sdp", b"v=0", "text/plain; charset=no-such-charset")),
        "invalid_value", "sdp"),
    "a charset that is not a text encoding": (
        multipart(part("sdp", b"v=0", "application/sdp; charset=base64")),
        "invalid_value", "sdp"),
    "two sdp parts": (multipart(SDP, SDP), "invalid_value", "sdp"),
    "a nested multipart part": (
        multipart(part("sdp", NESTED, "multipart/mixed; boundary=inner")),
        "invalid_value", "sdp"),
    "a part without a name": (
        multipart(({"Content-Disposition": "form-data"}, b"v=0")), "invalid_multipart", None),
    "broken base64": (
        multipart(SDP, part("session", b"e30", "application/json",
                            **{"Content-Transfer-Encoding": "base64"})),
        "invalid_value", "session"),
    "an unknown transfer encoding": (
        multipart(part("sdp", b"v=0", **{"Content-Transfer-Encoding": "x-rot13"})),
        "invalid_value", "sdp"),
    "an oversized part": (
        multipart(part("sdp", b"v=0\r\n" + b"a=x\r\n" * 60_000, "application/sdp")),
        "payload_too_large", "sdp"),
    "an oversized unknown part": (
        multipart(part("padding", bytes(300_000)), SDP), "payload_too_large", "padding"),
    "too many parts": (
        multipart(*[part(f"p{i}", b"") for i in range(40)]), "invalid_multipart", None),
    "a body cut short": (
        multipart(SDP)[:-len(BOUNDARY) - 8], "invalid_multipart", None),
    "no sdp part": (
        multipart(part("session", session_json(), "application/json")),
        "missing_required_parameter", "sdp"),
}


@pytest.mark.parametrize("case", BAD_FORMS)
async def test_multipart_bad_forms_are_a_400_naming_the_part(relay, case: str) -> None:
    body, code, param = BAD_FORMS[case]
    status, text, _ = await post_form(relay, body)
    assert status == (413 if code == "payload_too_large" else 400), text
    error = json.loads(text)["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", code, param)
    assert live_calls(relay) == 0


async def test_multipart_without_a_boundary_is_a_400(relay) -> None:
    status, text, _ = await post_form(relay, multipart(SDP), "multipart/form-data")
    assert status == 400, text
    assert json.loads(text)["error"]["code"] == "invalid_multipart"
