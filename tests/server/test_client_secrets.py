"""Sealed client secrets (relay.server.client_secrets): what opens, what never does, and
that a key reveals nothing of its session to whoever holds it."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import lzma
import os
import zlib

import pytest
from aiohttp import ClientSession

from relay.errors import AuthenticationFailed, PayloadTooLarge
from relay.server.client_secrets import (
    MAX_SECRET_CHARS,
    NONCE_BYTES,
    InvalidSecret,
    SecretSigner,
    key_id,
    sealing_key,
)

from ..conftest import base_url

SESSION = {"type": "realtime", "instructions": "bound", "tools": [{"name": "t"}]}
CURRENT, OLD = "c" * 32, "o" * 32
#: Sentinels a key must never show, however it is decoded.
INSTRUCTIONS_SENTINEL = "ZEBRA-INSTRUCTIONS-4471"
AUTH_SENTINEL = "sk-mcp-PELICAN-9931"
HEADER_SENTINEL = "hdr-OCELOT-2290"


def test_client_secrets_round_trip_the_expiry_and_session() -> None:
    signer = SecretSigner(CURRENT)
    token = signer.sign(1_700_000_600, SESSION)
    assert token.startswith(f"ek_{key_id(CURRENT.encode())}.")
    verified = signer.verify(token)
    assert (verified.expires_at, verified.session) == (1_700_000_600, SESSION)
    # A fresh nonce each time: two keys for one session differ.
    assert signer.sign(1_700_000_600, SESSION) != token


def test_client_secrets_old_secrets_verify_but_never_sign() -> None:
    old_token = SecretSigner(OLD).sign(1, SESSION)
    rotated = SecretSigner(CURRENT, [OLD])
    assert rotated.verify(old_token).session == SESSION
    assert rotated.sign(1, SESSION).startswith(f"ek_{key_id(CURRENT.encode())}.")
    with pytest.raises(InvalidSecret):
        SecretSigner(CURRENT).verify(old_token)


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1:]


def test_client_secrets_forged_truncated_or_tampered_keys_are_refused() -> None:
    signer = SecretSigner(CURRENT)
    token = signer.sign(1, SESSION)
    body_start = token.index(".") + 1
    bad = [
        SecretSigner("f" * 32).sign(1, SESSION),  # forged: another secret
        token[:-1], token[:-10], token[:body_start], token[:body_start - 1], "ek_", "ek_..",
        token[:body_start] + "AAAA", _flip(token, body_start + 3),
        _flip(token, len(token) - 2), _flip(token, body_start + 20), _flip(token, 4),
        token + "A", token.replace(".", "", 1), token + "é", "ek_" + "A" * MAX_SECRET_CHARS,
        # The sealed body moved under another key id (the id is authenticated too).
        f"ek_{key_id(OLD.encode())}.{token[body_start:]}",
    ]
    for candidate in bad:
        with pytest.raises(AuthenticationFailed) as info:
            SecretSigner(CURRENT, [OLD]).verify(candidate)
        assert info.value.status == 401 and CURRENT not in str(info.value.to_dict())


def test_client_secrets_a_sealed_zip_bomb_is_refused() -> None:
    # Even a payload that authenticates inflates only so far.
    packed = zlib.compress(b'{"exp": 1, "session": {"x": "' + b"a" * 2_000_000 + b'"}}', 9)
    head = f"ek_{key_id(CURRENT.encode())}."
    nonce = os.urandom(NONCE_BYTES)
    sealed = nonce + sealing_key(CURRENT.encode()).encrypt(nonce, packed, head.encode())
    token = head + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()
    assert len(token) < MAX_SECRET_CHARS
    with pytest.raises(InvalidSecret):
        SecretSigner(CURRENT).verify(token)


def test_client_secrets_a_session_too_large_to_seal_is_a_413() -> None:
    # Random text does not compress: a session this large cannot fit in a header.
    huge = {"type": "realtime", "instructions": base64.b64encode(os.urandom(4000)).decode()}
    with pytest.raises(PayloadTooLarge) as info:
        SecretSigner(CURRENT).sign(1, huge)
    assert info.value.status == 413 and info.value.param == "session"
    assert info.value.code == "session_too_large"


def test_client_secrets_many_tools_still_fit() -> None:
    tools = [{"type": "function", "name": f"tool_{i}", "description": "Looks a thing up.",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
             for i in range(40)]
    token = SecretSigner(CURRENT).sign(1, {"type": "realtime", "tools": tools})
    assert len(token) < 4096


def _decodings(data: bytes) -> list[bytes]:
    """``data`` and everything it might decompress to, at every offset."""
    out = [data]
    for start in range(len(data)):
        chunk = data[start:]
        for decompress in (zlib.decompress, lambda b: zlib.decompress(b, -15),
                           gzip.decompress, lzma.decompress):
            try:
                out.append(decompress(chunk))
            except Exception:
                pass
    return out


def _every_reading(token: str) -> list[bytes]:
    """Every way someone holding ``token`` might try to read it: the text itself, each
    dot-separated piece and the whole base64- (url and standard, any padding, any
    alignment), base32- and hex-decoded, then decompressed any way at any offset."""
    texts = [token, *token.split("."), token.removeprefix("ek_")]
    raw: list[bytes] = [token.encode()]
    for text in texts:
        for shift in range(4):
            piece = text[shift:]
            padded = piece + "=" * (-len(piece) % 4)
            for altchars in (b"-_", b"+/"):
                try:
                    raw.append(base64.b64decode(padded, altchars=altchars))
                except (binascii.Error, ValueError):
                    pass
        for decoder in (bytes.fromhex, base64.b32decode):
            try:
                raw.append(decoder(text))  # type: ignore[operator]
            except (binascii.Error, ValueError):
                pass
    readings: list[bytes] = []
    for data in raw:
        readings.extend(_decodings(data))
    return readings


def _assert_no_sentinel(token: str, *sentinels: str) -> None:
    readings = _every_reading(token)
    assert len(readings) > 10
    for reading in readings:
        lowered = reading.lower()
        for sentinel in sentinels:
            assert sentinel.lower().encode() not in lowered, sentinel
            assert sentinel.lower().encode("utf-16-le") not in lowered, sentinel


async def test_client_secrets_a_minted_key_reveals_nothing_of_its_session(
        relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server-secret",),
                                 signing_secret="s" * 40)
    session = {
        "type": "realtime", "instructions": f"Say {INSTRUCTIONS_SENTINEL} often.",
        "tools": [{"type": "mcp", "server_label": "notes", "server_url": "https://mcp.example",
                   "authorization": AUTH_SENTINEL, "headers": {"X-Key": HEADER_SENTINEL},
                   "require_approval": "never"}],
    }
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/client_secrets",
                             headers={"Authorization": "Bearer sk-server-secret"},
                             json={"session": session}) as r:
            assert r.status == 200, await r.text()
            text = await r.text()
    body = json.loads(text)
    token = body["value"]
    assert len(token) < 1024
    _assert_no_sentinel(token, INSTRUCTIONS_SENTINEL, AUTH_SENTINEL, HEADER_SENTINEL,
                        "instructions", "mcp.example", "server_label", "session")
    # The answer repeats the session (as the hosted API does), but never the tool's
    # credentials: whoever hands the key to a browser may hand it the answer too.
    assert INSTRUCTIONS_SENTINEL in text
    assert AUTH_SENTINEL not in text and HEADER_SENTINEL not in text
    assert body["session"]["tools"][0]["server_url"] == "https://mcp.example"
    # The relay itself still opens it, and the call gets the whole session.
    opened = SecretSigner("s" * 40).verify(token).session
    assert opened["tools"][0]["authorization"] == AUTH_SENTINEL


async def test_client_secrets_too_large_a_session_is_a_413_at_minting(relay_factory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server-secret",))
    huge = {"type": "realtime", "instructions": base64.b64encode(os.urandom(4000)).decode()}
    async with ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/realtime/client_secrets",
                             headers={"Authorization": "Bearer sk-server-secret"},
                             json={"session": huge}) as r:
            assert r.status == 413
            error = (await r.json())["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "session_too_large", "session", "invalid_request_error")
