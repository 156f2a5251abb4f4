"""Client secrets that carry themselves, sealed: ``ek_`` keys encrypted with AES-256-GCM.

A minted key holds its expiry and its session, so any relay that shares the signing secret
opens it without having seen it minted, and no relay keeps a table of keys. Browsers hold
these keys, so nothing in one may be readable: the session inside (instructions, a tool's
``authorization``) is encrypted, not merely signed. The shape::

    ek_<key id>.<sealed>

``key id`` names the signing secret (so a rotated-out secret still opens the keys it
sealed); ``sealed`` is base64url of a random 96-bit nonce followed by the AES-256-GCM
ciphertext and tag of the zlib-compressed JSON ``{"exp", "session"}`` (and ``rec``,
present and true when the operator asked for the key's calls to be recorded). The AES key
is derived from the signing secret with HKDF-SHA256 (never the secret itself), and
``ek_<key id>.`` is authenticated as associated data. The tag is checked before anything is
decompressed or parsed, and what is decompressed is bounded.

Compressing before encrypting lets a key's length vary with its session; only a server
key holder chooses sessions, and none of a session is taken from what a browser sends, so
the length says nothing an attacker can steer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import AuthenticationFailed, PayloadTooLarge
from ..protocol.realtime.session_config import Session

#: Client secrets are bearer tokens shaped like the hosted ones: browsers' SDKs check.
SECRET_PREFIX = "ek_"
#: Longest key minted or read. Headers of 8 KB pass every common proxy; a key of at most
#: 4 KB leaves room for the rest of a browser's request headers.
MAX_SECRET_CHARS = 4096
#: Most a payload may inflate to: a session with many tools fits; a zip bomb does not.
MAX_PAYLOAD_BYTES = 256 * 1024
#: AES-GCM's nonce: random per key (2**-32 collision odds only after 2**32 keys per secret).
NONCE_BYTES = 12
#: HKDF's context: a key derived for sealing client secrets and nothing else.
_HKDF_INFO = b"relay client secret sealing v2"


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
    """Seals and opens client secrets with one current secret and older ones that only
    open (rotation: move the old current secret to the verify-only list)."""

    def __init__(self, secret: str | bytes, verify_only: Sequence[str | bytes] = ()) -> None:
        current = _bytes(secret)
        self._key_id = key_id(current)
        self._keys = {key_id(_bytes(k)): sealing_key(_bytes(k)) for k in verify_only}
        self._keys[self._key_id] = sealing_key(current)

    @classmethod
    def random(cls) -> SecretSigner:
        """A signer whose keys only this instance can open."""
        return cls(secrets.token_bytes(32))

    def sign(self, expires_at: int, session: Session, *, record: bool = False) -> str:
        """A sealed key bound to ``session`` until ``expires_at`` (Unix seconds);
        ``record``: its calls are recorded. :class:`PayloadTooLarge` (413) for a session
        too large to fit in a header."""
        payload: dict[str, Any] = {"exp": expires_at, "session": session}
        if record:
            payload["rec"] = True
        packed = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 9)
        head = f"{SECRET_PREFIX}{self._key_id}."
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + self._keys[self._key_id].encrypt(nonce, packed, head.encode())
        value = head + _encode(sealed)
        if len(value) > MAX_SECRET_CHARS:
            raise PayloadTooLarge(
                f"The session is too large for a client secret ({len(value)} characters "
                f"sealed, at most {MAX_SECRET_CHARS}): shorten its instructions or tools, "
                "or create the call with a server key and its session.",
                code="session_too_large", param="session")
        return value

    def verify(self, token: str) -> VerifiedSecret:
        """The key's expiry and session; :class:`InvalidSecret` for anything not sealed
        by one of this signer's secrets. Expiry is the caller's to check."""
        if len(token) > MAX_SECRET_CHARS or not token.startswith(SECRET_PREFIX):
            raise InvalidSecret()
        kid, dot, body = token[len(SECRET_PREFIX):].partition(".")
        key = self._keys.get(kid)
        if key is None or not dot or not body:
            raise InvalidSecret()
        try:
            sealed = _decode(body)
            if len(sealed) <= NONCE_BYTES:
                raise InvalidSecret()
            head = f"{SECRET_PREFIX}{kid}.".encode()
            packed = key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], head)
            payload = json.loads(_inflate(packed))
        except (InvalidTag, ValueError, zlib.error) as exc:  # binascii.Error is a ValueError
            raise InvalidSecret() from exc
        return _verified(payload)


def sealing_key(secret: bytes) -> AESGCM:
    """The AES-256-GCM key a signing secret seals client secrets with (HKDF-SHA256)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_HKDF_INFO).derive(secret)
    return AESGCM(derived)


def key_id(secret: bytes) -> str:
    """A short public name for ``secret`` (it says nothing about the secret itself)."""
    return hashlib.sha256(b"relay client secret key id\0" + secret).hexdigest()[:8]


def _verified(payload: Any) -> VerifiedSecret:
    # Sealed by us, so well formed unless the format changed under an old key.
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
