"""Connecting to an upstream Realtime WebSocket (GA protocol)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ..errors import UpstreamError

logger = logging.getLogger(__name__)

#: Audio deltas and long session objects can be large; the default 1 MiB is not enough.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


async def connect_upstream(
    url: str, headers: Mapping[str, str], *, timeout: float = 10.0
) -> ClientConnection:
    """Open the Realtime WebSocket, or raise :class:`UpstreamError`.

    Compression is off: base64 audio barely compresses and deflate would cost CPU on every
    message. The error names no header, so no key can leak through it.
    """
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise UpstreamError(
            f"The upstream Realtime server refused the session (HTTP {status}).",
            code="upstream_unauthorized" if status in (401, 403) else "upstream_error",
        ) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise UpstreamError(
            f"The upstream Realtime server could not be reached ({type(exc).__name__})."
        ) from exc
