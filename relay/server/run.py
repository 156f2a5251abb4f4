"""Running the relay's app until interrupted."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..config import Settings
from .app import create_app

logger = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Serve ``settings``' relay until cancelled (Ctrl-C), then shut down cleanly."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    logger.info("relay listening on http://%s:%d/", settings.host, settings.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
