"""Signed client secrets (relay.server.client_secrets): what verifies and what never does."""

from __future__ import annotations

import base64
import os
import zlib

import pytest

from relay.errors import AuthenticationFailed, InvalidRequest
from relay.server.client_secrets import (
    MAX_SECRET_CHARS,
    InvalidSecret,
    SecretSigner,
    key_id,
)

SESSION = {"type": "realtime", "instructions": "bound", "tools": [{"name": "t"}]}
CURRENT, OLD = "c" * 32, "o" * 32


def test_client_secrets_round_trip_the_expiry_and_session() -> None:
    signer = SecretSigner(CURRENT)
    token = signer.sign(1_700_000_600, SESSION)
    assert token.startswith(f"ek_{key_id(CURRENT.encode())}.")
    verified = signer.verify(token)
    assert (verified.expires_at, verified.session) == (1_700_000_600, SESSION)


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
    kid_end = token.index(".")
    mac_start = token.rindex(".") + 1
    bad = [
        SecretSigner("f" * 32).sign(1, SESSION),  # forged: another secret
        token[:-1], token[:-10], token[:mac_start], token[:kid_end], "ek_", "ek_..",
        _flip(token, kid_end + 3), _flip(token, mac_start + 2), _flip(token, 4),
        token + "A", token.replace(".", "", 1), token + "é", "ek_" + "A" * MAX_SECRET_CHARS,
    ]
    for candidate in bad:
        with pytest.raises(AuthenticationFailed) as info:
            signer.verify(candidate)
        assert info.value.status == 401 and CURRENT not in str(info.value.to_dict())


def test_client_secrets_a_signed_zip_bomb_is_refused() -> None:
    # Even a payload carrying a valid MAC inflates only so far.
    signer = SecretSigner(CURRENT)
    packed = zlib.compress(b'{"exp": 1, "session": {"x": "' + b"a" * 2_000_000 + b'"}}', 9)
    body = base64.urlsafe_b64encode(packed).rstrip(b"=").decode()
    signed = f"ek_{key_id(CURRENT.encode())}.{body}"
    mac = base64.urlsafe_b64encode(signer._mac(CURRENT.encode(), signed)).rstrip(b"=").decode()
    assert len(signed) < MAX_SECRET_CHARS
    with pytest.raises(InvalidSecret):
        signer.verify(f"{signed}.{mac}")


def test_client_secrets_a_session_too_large_to_mint_is_a_400() -> None:
    # Random text does not compress: a session this large cannot fit in a header.
    huge = {"type": "realtime", "instructions": base64.b64encode(os.urandom(6000)).decode()}
    with pytest.raises(InvalidRequest) as info:
        SecretSigner(CURRENT).sign(1, huge)
    assert info.value.status == 400 and info.value.param == "session"


def test_client_secrets_many_tools_still_fit() -> None:
    tools = [{"type": "function", "name": f"tool_{i}", "description": "Looks a thing up.",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
             for i in range(40)]
    token = SecretSigner(CURRENT).sign(1, {"type": "realtime", "tools": tools})
    assert len(token) < 4096
