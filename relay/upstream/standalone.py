"""``relay upstream``: run the embedded local server (its Realtime and GPT-Live faces) on
its own."""

from __future__ import annotations

import asyncio
import logging

from . import LocalMode
from .local import LocalRealtimeServer

logger = logging.getLogger(__name__)


async def run_local(host: str, port: int, mode: LocalMode,
                    mcp_urls: tuple[str, ...] = (),
                    max_session_seconds: float | None = None) -> None:
    """Serve the local Realtime server on ``host:port`` until cancelled; sessions may name
    the MCP servers under ``mcp_urls``, and expire after ``max_session_seconds`` (when
    given)."""
    server = LocalRealtimeServer(mode=mode, mcp_urls=mcp_urls,
                                 max_session_seconds=max_session_seconds)
    await server.start(host, port)
    try:
        print(server.url, flush=True)
        print(server.live_url, flush=True)
        await asyncio.Event().wait()
    finally:
        await server.close()
