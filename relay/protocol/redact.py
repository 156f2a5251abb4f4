"""Keeping the upstream's secrets from clients.

What the upstream says reaches clients: its events pass through to the data channel and
the sidebands, and its close reason is told in an ``error`` event. A verbose or hostile
upstream may echo the key it was sent (``Incorrect API key provided: Bearer sk-...``), so
every upstream message and close reason is redacted before the call reads it: each secret
the relay sends upstream becomes ``***``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

#: What a secret is replaced with.
MASK = "***"
#: Shortest string treated as a secret (shorter ones would mask ordinary words).
MIN_SECRET_CHARS = 8


class Redactor:
    """Replaces the given secrets in text or bytes; does nothing without any."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret that contains another is masked whole.
        ordered = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len,
                         reverse=True)
        self._texts = tuple(ordered)
        self._bytes = tuple(s.encode() for s in ordered)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """A redactor masking these secrets as well as this one's (self when none is new)."""
        new = {s for s in secrets if len(s) >= MIN_SECRET_CHARS} - set(self._texts)
        return Redactor((*self._texts, *new)) if new else self

    def __bool__(self) -> bool:
        return bool(self._texts)

    @overload
    def __call__(self, message: str) -> str: ...

    @overload
    def __call__(self, message: bytes) -> bytes: ...

    def __call__(self, message: str | bytes) -> str | bytes:
        """``message`` with every secret replaced by :data:`MASK`."""
        if isinstance(message, str):
            for secret in self._texts:
                if secret in message:
                    message = message.replace(secret, MASK)
            return message
        for raw in self._bytes:
            if raw in message:
                message = message.replace(raw, MASK.encode())
        return message
