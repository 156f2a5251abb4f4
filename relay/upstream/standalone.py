"""``relay upstream``: run the embedded local server (its Realtime and GPT-Live faces) on
its own."""

from __future__ import annotations

import asyncio
import logging

from . import LocalMode
from .local import LocalRealtimeServer

logger = logging.getLogger(__name__)


async def run_local(host: str, port: int, mode: LocalMode,
                    mcp_urls: tuple[str, ...] = ()) -> None:
    """Serve the local Realtime server on ``host:port`` until cancelled; sessions may name
    the MCP servers under ``mcp_urls``."""
    server = LocalRealtimeServer(mode=mode, mcp_urls=mcp_urls)
    await server.start(host, port)
    try:
        print(server.url, flush=True)
        print(server.live_url, flush=True)
        await asyncio.Event().wait()
    finally:
        await server.close()
