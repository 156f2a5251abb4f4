"""GPT-Live's primary WebSocket, served to clients: ``GET /v1/live/sessions`` upgraded
(what ``client.live.connect()`` of the official package opens), bridged to an upstream
Live session of its own: the embedded server's, or the hosted one with the operator's key.

The client authenticates as for a Live WebRTC session (a server key, or an ``ek_`` key
minted at ``POST /v1/live/client_secrets``, whose configuration its ``session.start``
cannot change); the session counts toward ``RELAY_MAX_CALLS``, is metered (``type="live"``)
and logged by its id, and the drain ends it as it ends a Realtime WebSocket session. What
the client may send and how its ``session.start`` is checked is
:class:`~relay.protocol.live.primary_core.LiveWebSocketCore`'s to decide.

``GET /v1/live/sessions/{id}/fork`` upgraded (``client.live.forks.connect``) is the
WebSocket fork of a stored session: a primary session whose ``session.start`` carries
overrides of the stored configuration (``ForkSessionConfig``), which the relay turns into
the stored configuration and conversation (:mod:`.live_stored`). It takes a server key,
as the WebRTC fork does; the errors of a session that cannot be forked come before the
upgrade, as JSON.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import CallNotFound, InvalidRequest, LiveSessionNotFound
from ..protocol.events import random_id
from ..protocol.live.live_config import sealed_live_config
from ..protocol.live.primary_core import LiveWebSocketCore
from ..protocol.realtime.policy import UNSET
from .app_state import AUTH, LIVE_UPSTREAM, SETTINGS, forward_to_owner
from .auth import credentials
from .live_stored import fork_base
from .websocket_serving import admit_websocket_session, serve_websocket_session
from .websocket_session import MAX_MESSAGE_BYTES, message_limits, upstream_redactor


async def open_live_session(request: web.Request) -> web.StreamResponse:
    """``GET /v1/live/sessions`` upgraded to a WebSocket: a primary Live session. Errors
    before the upgrade (the key, the relay's limits) come as JSON; after it, as Live
    ``error`` events."""
    app = request.app
    settings = app[SETTINGS]
    authorization = credentials(request.headers)
    sealed = sealed_live_config(app[AUTH].authorize_call(authorization))
    key = app[AUTH].client_secret_id(authorization)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to open a primary Live session (then "
                             "send session.start), or POST a WebRTC offer here to create a "
                             "WebRTC session.", code="websocket_required")
    await admit_websocket_session(request, key)
    core = LiveWebSocketCore(
        random_id("live_"), sealed, clock=asyncio.get_running_loop().time,
        policy=settings.policy, unset=UNSET, offline=settings.uses_local_upstream,
        limits=message_limits(settings), redact=upstream_redactor(settings))
    return await serve_websocket_session(request, ws, core, app[LIVE_UPSTREAM], key=key)


async def open_live_fork(request: web.Request) -> web.StreamResponse:
    """``GET /v1/live/sessions/{id}/fork`` upgraded to a WebSocket (server key): a primary
    Live session forked from the stored, ended session ``id``; its ``session.start``
    names overrides only (``ForkSessionConfig``)."""
    app = request.app
    settings = app[SETTINGS]
    app[AUTH].require_server_key(credentials(request.headers))
    session_id = request.match_info["session_id"]
    try:
        routed = await forward_to_owner(request, session_id,
                                        websocket_max_msg_size=MAX_MESSAGE_BYTES)
    except CallNotFound as exc:
        raise LiveSessionNotFound() from exc
    if routed is not None:
        return routed
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to fork a Live session over WebSocket "
                             "(then send session.start), or POST a WebRTC offer here.",
                             code="websocket_required")
    base, carried, dropped = await fork_base(request, session_id)
    await admit_websocket_session(request, None)
    core = LiveWebSocketCore(
        random_id("live_"), None, clock=asyncio.get_running_loop().time,
        policy=settings.policy, unset=UNSET, offline=settings.uses_local_upstream,
        limits=message_limits(settings), redact=upstream_redactor(settings), fork=base)
    core.log.info("forked from %s (%d messages of its conversation, %d left out)",
                  session_id, carried, dropped)
    return await serve_websocket_session(request, ws, core, app[LIVE_UPSTREAM], key=None)
