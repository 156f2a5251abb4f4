"""Who may use the relay: server keys, and the short-lived client secrets minted from them.

Client secrets are sealed, self-contained tokens (relay.server.client_secrets): nothing is
remembered between minting and use, so a key minted by one relay works on every relay that
shares its signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import AuthenticationFailed, InvalidRequest
from ..protocol.realtime.session_config import Session
from .client_secrets import SECRET_PREFIX, SecretSigner

__all__ = ["DEFAULT_TTL", "MAX_TTL", "MIN_TTL", "SECRET_PREFIX", "Authenticator",
           "ClientSecret", "credentials"]

#: Bounds of ``expires_after.seconds``, as the hosted API documents them.
MIN_TTL, MAX_TTL, DEFAULT_TTL = 10, 7200, 600


@dataclass(frozen=True)
class ClientSecret:
    """A minted key and the session a call created with it gets."""

    value: str
    expires_at: int
    session: Session
    record: bool = False


class Authenticator:
    """Checks bearer keys, and mints and verifies client secrets.

    With no server keys (open mode) any bearer is accepted; a valid client secret still
    binds its session.
    """

    def __init__(self, server_keys: tuple[str, ...], clock: Callable[[], float] = time.time,
                 signer: SecretSigner | None = None) -> None:
        self._server_keys = server_keys
        self._clock = clock
        self._signer = signer or SecretSigner.random()

    def require_server_key(self, authorization: str | None) -> None:
        """Raise unless ``authorization`` carries a server key (any key when none is set)."""
        token = _bearer(authorization)
        if token.startswith(SECRET_PREFIX) or not self._is_server_key(token):
            raise AuthenticationFailed("A server API key is required for this endpoint.")

    def authorize_call(self, authorization: str | None) -> Session | None:
        """Check the key of a call request; return the session of a client secret, if any.

        A live client secret signed with this relay's secret always binds its session. With
        no server keys configured (open mode) any other bearer is accepted too, including
        an ``ek_`` key minted elsewhere or expired: browser SDKs refuse keys without that
        prefix, so a page in open mode may send any ``ek_`` string.
        """
        token = _bearer(authorization)
        if token.startswith(SECRET_PREFIX):
            try:
                return self._live_session(token)
            except AuthenticationFailed:
                if self._server_keys:
                    raise
                return None
        if not self._is_server_key(token):
            raise AuthenticationFailed("Incorrect API key provided.")
        return None

    def client_secret_id(self, authorization: str | None) -> str | None:
        """A short id of the live client secret ``authorization`` carries (for its limits),
        or None for any other key: server keys are bounded only by the relay's limits."""
        token = _bearer(authorization)
        if not token.startswith(SECRET_PREFIX):
            return None
        try:
            self._live_session(token)
        except AuthenticationFailed:
            return None
        return hashlib.sha256(token.encode()).hexdigest()[:32]

    def recording_requested(self, authorization: str | None) -> bool:
        """True when ``authorization`` carries a live client secret minted with
        ``"record": true`` (its calls are recorded)."""
        token = _bearer(authorization)
        if not token.startswith(SECRET_PREFIX):
            return False
        try:
            verified = self._signer.verify(token)
        except AuthenticationFailed:
            return False
        return verified.record and verified.expires_at > self._clock()

    def is_server_key(self, authorization: str | None) -> bool:
        """True when ``authorization`` carries a server key (any bearer but a client
        secret, when none is configured)."""
        token = _bearer(authorization)
        return not token.startswith(SECRET_PREFIX) and self._is_server_key(token)

    def mint(self, session: Session, ttl: int = DEFAULT_TTL, *,
             record: bool = False) -> ClientSecret:
        """A new client secret valid for ``ttl`` seconds, bound to ``session`` (and, with
        ``record``, recording its calls)."""
        if isinstance(ttl, bool) or not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidRequest(
                f"expires_after.seconds must be between {MIN_TTL} and {MAX_TTL}.",
                code="invalid_value", param="expires_after.seconds",
            )
        expires_at = int(self._clock()) + ttl
        return ClientSecret(self._signer.sign(expires_at, session, record=record), expires_at,
                            session, record)

    def _live_session(self, token: str) -> Session:
        verified = self._signer.verify(token)
        if verified.expires_at <= self._clock():
            raise AuthenticationFailed("The client secret has expired.")
        return verified.session

    def _is_server_key(self, token: str) -> bool:
        if not self._server_keys:
            return True
        # Compare against every key so timing says nothing about which one matched.
        matches = [hmac.compare_digest(token.encode(), key.encode()) for key in self._server_keys]
        return any(matches)


def credentials(headers: Mapping[str, str]) -> str | None:
    """The request's key as an ``Authorization`` value: that header, or Azure's
    ``api-key`` header form (which the Realtime clients of Azure send instead)."""
    authorization = headers.get("Authorization")
    if authorization is None and headers.get("api-key"):
        return f"Bearer {headers['api-key']}"
    return authorization


def _bearer(authorization: str | None) -> str:
    """The bearer token of ``authorization``; "" for none, and for one that is not
    printable ASCII, which no key is (aiohttp hands over the bytes of a header that is not
    UTF-8 as surrogates, which cannot even be compared)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not (token.isascii() and token.isprintable()):
        return ""
    return token
