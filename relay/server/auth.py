"""Who may use the relay: server keys, and the short-lived client secrets minted from them."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import AuthenticationFailed, InvalidRequest
from ..protocol.events import random_id
from ..protocol.session import Session

#: Bounds of ``expires_after.seconds``, as the hosted API documents them.
MIN_TTL, MAX_TTL, DEFAULT_TTL = 10, 7200, 600
#: Client secrets are bearer tokens shaped like the hosted ones: browsers' SDKs check.
SECRET_PREFIX = "ek_"


@dataclass(frozen=True)
class ClientSecret:
    """A minted key and the session a call created with it gets."""

    value: str
    expires_at: int
    session: Session


class Authenticator:
    """Checks bearer keys and keeps the client secrets this relay has minted."""

    def __init__(self, server_keys: tuple[str, ...], clock: Callable[[], float] = time.time):
        self._server_keys = server_keys
        self._clock = clock
        self._secrets: dict[str, ClientSecret] = {}

    def require_server_key(self, authorization: str | None) -> None:
        """Raise unless ``authorization`` carries a server key (any key when none is set)."""
        token = _bearer(authorization)
        if token.startswith(SECRET_PREFIX) or not self._is_server_key(token):
            raise AuthenticationFailed("A server API key is required for this endpoint.")

    def authorize_call(self, authorization: str | None) -> Session | None:
        """Check the key of a call request; return the session of a client secret, if any.

        A live client secret this relay minted always binds its session. With no server
        keys configured (open mode) any other bearer is accepted too, including an ``ek_``
        key minted elsewhere or expired: browser SDKs refuse keys without that prefix, so
        a page in open mode may send any ``ek_`` string.
        """
        token = _bearer(authorization)
        secret = self._live_secret(token)
        if secret is not None:
            return secret.session
        if not self._server_keys:
            return None
        if token.startswith(SECRET_PREFIX):
            raise AuthenticationFailed("The client secret is unknown or has expired.")
        if not self._is_server_key(token):
            raise AuthenticationFailed("Incorrect API key provided.")
        return None

    def mint(self, session: Session, ttl: int = DEFAULT_TTL) -> ClientSecret:
        """A new client secret valid for ``ttl`` seconds, bound to ``session``."""
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidRequest(
                f"expires_after.seconds must be between {MIN_TTL} and {MAX_TTL}.",
                code="invalid_value", param="expires_after.seconds",
            )
        self._purge()
        secret = ClientSecret(random_id(SECRET_PREFIX, 32), int(self._clock()) + ttl, session)
        self._secrets[secret.value] = secret
        return secret

    def _live_secret(self, token: str) -> ClientSecret | None:
        secret = self._secrets.get(token) if token.startswith(SECRET_PREFIX) else None
        if secret is None or secret.expires_at <= self._clock():
            return None
        return secret

    def _is_server_key(self, token: str) -> bool:
        if not self._server_keys:
            return True
        # Compare against every key so timing says nothing about which one matched.
        matches = [hmac.compare_digest(token.encode(), key.encode()) for key in self._server_keys]
        return any(matches)

    def _purge(self) -> None:
        now = self._clock()
        for value in [v for v, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[value]


def credentials(headers: Mapping[str, str]) -> str | None:
    """The request's key as an ``Authorization`` value: that header, or Azure's
    ``api-key`` header form (which the Realtime clients of Azure send instead)."""
    authorization = headers.get("Authorization")
    if authorization is None and headers.get("api-key"):
        return f"Bearer {headers['api-key']}"
    return authorization


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
