"""The app's shared state, one typed key each (no module globals), and where a call's
owner is found: what every protocol family's handlers read."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..cluster.forward import FORWARDED_HEADER, forward_http, forward_websocket
from ..cluster.node import Node
from ..config import Settings
from ..upstream.client import UpstreamConnector
from .agent import CallAgents
from .auth import Authenticator
from .call_records import CallRecords
from .drain import Drain
from .loop_lag import LoopLagMonitor
from .readiness import UpstreamProbe
from .registry import CallRegistry
from .websocket_session import WebSocketSessions

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", CallRegistry)
AUTH = web.AppKey("auth", Authenticator)
#: This relay's owner id, where it finds the relays that own other calls, and its limits
#: (how fast calls may be created, how many one client secret may hold: in this process,
#: or across the cluster through Redis).
NODE = web.AppKey("node", Node)
#: The live WebSocket sessions (``GET /v1/realtime`` without a call, and GPT-Live's
#: ``GET /v1/live/sessions``).
WS_SESSIONS = web.AppKey("ws_sessions", WebSocketSessions)
#: Where calls get their upstream Realtime sessions.
UPSTREAM = web.AppKey("upstream", UpstreamConnector)
#: Where GPT-Live sessions get their upstream (a primary Live WebSocket).
LIVE_UPSTREAM = web.AppKey("live_upstream", UpstreamConnector)
#: The agent served on every call (``--agent``), when there is one.
AGENTS = web.AppKey("agents", CallAgents)
#: This app's Prometheus registry (never prometheus_client's global one).
METRICS = web.AppKey("metrics", CollectorRegistry)
#: The remote upstream's reachability (absent with the embedded upstream).
PROBE = web.AppKey("probe", UpstreamProbe)
#: The event loop's lag, measured while the app runs.
LOOP_LAG = web.AppKey("loop_lag", LoopLagMonitor)
#: Whether the relay still takes calls (relay/server/drain.py); relay/server/serve.py begins
#: the drain on SIGTERM, and the app's cleanup runs only once it is over.
DRAIN = web.AppKey("drain", Drain)
#: Recordings and webhooks of the calls (relay/server/call_records.py).
RECORDS = web.AppKey("records", CallRecords)


async def owner_address(request: web.Request, call_id: str) -> str | None:
    """None when the call is this relay's, else where its owner listens (the request is
    then forwarded there). A request that was forwarded already is never forwarded again."""
    return await request.app[NODE].locate(call_id,
                                          forwarded=FORWARDED_HEADER in request.headers)


async def forward_to_owner(request: web.Request, call_id: str, *,
                           websocket_max_msg_size: int | None = None
                           ) -> web.StreamResponse | None:
    """None when the call is this relay's; else the answer of the relay that owns it, the
    request forwarded there (a WebSocket, with messages of up to
    ``websocket_max_msg_size`` bytes, when one is given)."""
    owner = await owner_address(request, call_id)
    if owner is None:
        return None
    if websocket_max_msg_size is not None:
        return await forward_websocket(request, owner, max_msg_size=websocket_max_msg_size)
    return await forward_http(request, owner)
