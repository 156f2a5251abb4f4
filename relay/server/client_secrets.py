"""Client secrets that carry themselves: ``ek_`` keys signed with HMAC-SHA256.

A minted key holds its expiry and its session, so any relay that shares the signing secret
verifies it without having seen it minted, and no relay keeps a table of keys. The shape::

    ek_<key id>.<payload>.<mac>

``key id`` names the signing secret (so a rotated-out secret can still verify the keys it
signed), ``payload`` is base64url of the zlib-compressed JSON ``{"exp", "session", "n"}``
(``n`` a nonce: two keys minted in one second differ; ``rec``, present and true when the
operator asked for the key's calls to be recorded), and ``mac`` is base64url of
HMAC-SHA256 over everything before it. The MAC is checked before anything is decompressed
or parsed, and what is decompressed is bounded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import AuthenticationFailed, InvalidRequest
from ..protocol.realtime.session_config import Session

#: Client secrets are bearer tokens shaped like the hosted ones: browsers' SDKs check.
SECRET_PREFIX = "ek_"
#: Longest key minted or read. Headers of 8 KB pass every common proxy.
MAX_SECRET_CHARS = 6144
#: Most a payload may inflate to: a session with many tools fits; a zip bomb does not.
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class VerifiedSecret:
    """What a valid key says: when it expires and the session it binds."""

    expires_at: int
    session: Session
    #: The operator asked for calls made with this key to be recorded.
    record: bool = False


class InvalidSecret(AuthenticationFailed):
    """The key is not one a relay sharing this signing secret minted (or it was altered)."""

    def __init__(self) -> None:
        super().__init__("The client secret is invalid.")


class SecretSigner:
    """Signs and verifies client secrets with one current secret and older ones that only
    verify (rotation: move the old current secret to the verify-only list)."""

    def __init__(self, secret: str | bytes, verify_only: Sequence[str | bytes] = ()) -> None:
        current = _bytes(secret)
        self._key_id = key_id(current)
        self._keys = {key_id(_bytes(k)): _bytes(k) for k in verify_only}
        self._keys[self._key_id] = current

    @classmethod
    def random(cls) -> SecretSigner:
        """A signer whose keys only this instance can verify."""
        return cls(secrets.token_bytes(32))

    def sign(self, expires_at: int, session: Session, *, record: bool = False) -> str:
        """A key bound to ``session`` until ``expires_at`` (Unix seconds); ``record``: its
        calls are recorded."""
        payload: dict[str, Any] = {"exp": expires_at, "session": session,
                                   "n": secrets.token_urlsafe(6)}
        if record:
            payload["rec"] = True
        packed = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 9)
        signed = f"{SECRET_PREFIX}{self._key_id}.{_encode(packed)}"
        value = f"{signed}.{_encode(self._mac(self._keys[self._key_id], signed))}"
        if len(value) > MAX_SECRET_CHARS:
            raise InvalidRequest(
                f"The session is too large for a client secret ({len(value)} characters "
                f"signed, at most {MAX_SECRET_CHARS}).", code="session_too_large",
                param="session")
        return value

    def verify(self, token: str) -> VerifiedSecret:
        """The key's expiry and session; :class:`InvalidSecret` for anything not signed by
        one of this signer's secrets. Expiry is the caller's to check."""
        if len(token) > MAX_SECRET_CHARS or not token.startswith(SECRET_PREFIX):
            raise InvalidSecret()
        signed, _, mac = token.rpartition(".")
        kid, _, body = signed[len(SECRET_PREFIX):].partition(".")
        key = self._keys.get(kid)
        if key is None or not body:
            raise InvalidSecret()
        try:
            ok = hmac.compare_digest(_decode(mac), self._mac(key, signed))
            if not ok:
                raise InvalidSecret()
            payload = json.loads(_inflate(_decode(body)))
        except (ValueError, zlib.error) as exc:  # (binascii.Error is a ValueError)
            raise InvalidSecret() from exc
        return _verified(payload)

    @staticmethod
    def _mac(key: bytes, signed: str) -> bytes:
        return hmac.new(key, signed.encode("ascii", "replace"), hashlib.sha256).digest()


def key_id(secret: bytes) -> str:
    """A short public name for ``secret`` (it says nothing about the secret itself)."""
    return hashlib.sha256(b"relay client secret key id\0" + secret).hexdigest()[:8]


def _verified(payload: Any) -> VerifiedSecret:
    # Signed by us, so well formed unless the format changed under an old key.
    if not (isinstance(payload, dict) and isinstance(payload.get("exp"), int)
            and isinstance(payload.get("session"), dict)):
        raise InvalidSecret()
    return VerifiedSecret(payload["exp"], payload["session"], payload.get("rec") is True)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_PAYLOAD_BYTES)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("payload too large or truncated")
    return out


def _bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
