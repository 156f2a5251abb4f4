"""``relay upstream``: run the embedded local Realtime server on its own."""

from __future__ import annotations

import asyncio
import logging

from . import LocalMode
from .local import LocalRealtimeServer

logger = logging.getLogger(__name__)


async def run_local(host: str, port: int, mode: LocalMode,
                    max_session_seconds: float | None = None) -> None:
    """Serve the local Realtime server on ``host:port`` until cancelled (its sessions
    expire after ``max_session_seconds``, when given)."""
    server = LocalRealtimeServer(mode=mode, max_session_seconds=max_session_seconds)
    await server.start(host, port)
    try:
        print(server.url, flush=True)
        await asyncio.Event().wait()
    finally:
        await server.close()
