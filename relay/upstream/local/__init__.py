"""The embedded local Realtime server: the relay's default, offline upstream.

A real WebSocket server speaking the Realtime API (GA shape) that needs no model: it parrots
each user turn back (or, in echo mode, returns input audio at once). The protocol lives in
the sans-I/O :class:`LocalSession`; :class:`LocalRealtimeServer` is its asyncio driver.
"""

from .server import LocalRealtimeServer
from .session import LocalSession

__all__ = ["LocalRealtimeServer", "LocalSession"]
