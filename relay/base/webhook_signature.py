"""Signing webhooks as Standard Webhooks (the scheme OpenAI signs its own with); no I/O.

The secret is ``whsec_`` and the base64 of the HMAC key. A message sent as ``id`` at
``timestamp`` (Unix seconds) with ``body`` is signed ``v1,`` + base64 of
HMAC-SHA256(key, ``id.timestamp.body``); receivers check it with the ``standardwebhooks``
package or openai's ``client.webhooks.verify_signature``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64); ``ValueError``
    if it is not one."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a whsec_ secret") from exc
    if len(key) < 16:
        raise ValueError("key too short")
    return key


def webhook_secret_problem(secret: str | None) -> str | None:
    """What is wrong with a ``RELAY_WEBHOOK_SECRET`` (for the settings' check), or None."""
    if secret is None:
        return None
    try:
        secret_key(secret)
    except ValueError:
        return ("must be whsec_ and base64 of at least 16 random bytes "
                "(e.g. whsec_$(openssl rand -base64 32))")
    return None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
