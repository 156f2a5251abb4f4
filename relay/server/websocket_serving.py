"""Opening a bridged WebSocket session, for either voice API's handler: the admission a
call gets (the drain, ``RELAY_MAX_CALLS``, the creation rate, a client secret's own
limit), then the upgrade and the :class:`~.websocket_session.WebSocketSession` that runs
until the session ends, counted in the metrics and tracked for the drain.

The handlers (``GET /v1/realtime`` in :mod:`.realtime_api`, ``GET /v1/live/sessions`` in
:mod:`.live_websocket`) decide who may open what and build the protocol core; everything
after that is here, once.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import CapacityExceeded
from ..protocol.websocket_protocol import WebSocketProtocol
from ..upstream.client import UpstreamConnector
from .app_state import DRAIN, NODE, REGISTRY, SETTINGS, WS_SESSIONS
from .registry import CAPACITY_RETRY_AFTER
from .websocket_session import WebSocketSession


async def admit_websocket_session(request: web.Request, key: str | None) -> None:
    """Refuse a new WebSocket session, before the upgrade, when the relay drains, is at its
    call limit (calls and WebSocket sessions count alike), or ``key`` (a client secret's
    id; None for a server key) or the client's address opens sessions too fast."""
    app = request.app
    app[DRAIN].check()
    if len(app[REGISTRY]) + len(app[WS_SESSIONS]) >= app[SETTINGS].max_calls:
        raise CapacityExceeded("The relay is at its limit of concurrent calls.",
                               retry_after=CAPACITY_RETRY_AFTER)
    await app[NODE].limits.admit(request.remote, key)


async def serve_websocket_session(request: web.Request, ws: web.WebSocketResponse,
                                  core: WebSocketProtocol, upstream: UpstreamConnector, *,
                                  key: str | None,
                                  model: str | None = None) -> web.WebSocketResponse:
    """Hold the session's place under ``key``'s limit, upgrade ``ws`` and bridge it to a
    session of ``upstream`` through ``core`` until either side ends it."""
    app = request.app
    await app[NODE].limits.hold(key, core.session_id)
    sessions = app[WS_SESSIONS]
    totals = app[REGISTRY].totals

    def closed(done: WebSocketSession) -> None:
        sessions.discard(done)
        app[NODE].limits.release_soon(done.id)
        totals.websocket_session_ended(done)

    try:
        await ws.prepare(request)
    except BaseException:
        app[NODE].limits.release_soon(core.session_id)
        raise
    bridged = WebSocketSession(core, upstream, ws, model=model, on_closed=closed)
    sessions.add(bridged)
    totals.websocket_session_created(bridged.session_type)
    await bridged.run()
    return ws
