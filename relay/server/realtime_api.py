"""The Realtime API's endpoints: calls (create, hang up, describe), client secrets, the
sideband WebSocket, and WebSocket sessions of their own.

The shapes are the hosted WebRTC endpoint's (shared/PROTOCOL.md), plus the relay's own
recording download (``GET /v1/realtime/calls/{id}/content``, as GPT-Live's sessions have
one) and ``"record"`` when minting a client secret; what a call is and
does lives in the registry, the call driver and :mod:`relay.protocol.realtime`.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..errors import InvalidRequest, RelayError
from ..protocol.events import random_id
from ..protocol.realtime.session_config import conceal_tool_secrets, effective_session
from ..protocol.realtime.websocket_core import WebSocketSessionCore
from .agent import loopback_base
from .app_state import (
    AGENTS,
    AUTH,
    DRAIN,
    REGISTRY,
    SETTINGS,
    UPSTREAM,
    forward_to_owner,
)
from .auth import DEFAULT_TTL, credentials
from .call_admission import admit_caller, register_call
from .recording_api import record_requested, recording_content
from .requests import dcid_param, expires_after_seconds, read_json, read_offer, record_field
from .resume_token import RESUME_TOKEN_HEADER, check_token, presented_token
from .sideband import MAX_MESSAGE_BYTES as SIDEBAND_MAX_MESSAGE_BYTES
from .websocket_serving import admit_websocket_session, serve_websocket_session
from .websocket_session import MAX_MESSAGE_BYTES as WS_SESSION_MAX_MESSAGE_BYTES
from .websocket_session import (
    REALTIME_SUBPROTOCOL,
    message_limits,
    subprotocol_key,
    upstream_redactor,
)

logger = logging.getLogger(__name__)


def add_realtime_routes(router: web.UrlDispatcher) -> None:
    """Serve the Realtime API's endpoints on ``router``."""
    router.add_post("/v1/realtime/calls", create_call)
    router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup_call)
    router.add_post("/v1/realtime/calls/{call_id}/resume", resume_call)
    router.add_patch("/v1/realtime/calls/{call_id}", patch_call)
    router.add_get("/v1/realtime/calls/{call_id}", describe_call)
    router.add_get("/v1/realtime/calls/{call_id}/content", call_content)
    router.add_post("/v1/realtime/client_secrets", create_client_secret)
    router.add_get("/v1/realtime", attach_sideband)


async def create_call(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls``: an SDP offer in, 201 with the SDP answer out."""
    app = request.app
    settings = app[SETTINGS]
    caller = await admit_caller(request)
    record = record_requested(request)
    offer, client_session = await read_offer(request, settings.max_sdp_bytes)
    session, model = settings.session_rules.admit(caller.sealed, client_session,
                                                  query_model=request.query.get("model"))
    dcid = dcid_param(request.query.get("dcid"))
    call = await register_call(request, caller, session, app[UPSTREAM], model, record=record)
    answer = await call.start(offer, dcid=dcid)
    logger.info("call %s: created", call.id)
    agents = app.get(AGENTS)
    if agents is not None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        agents.serve(call, loopback_base(sockname, settings))
    return web.Response(
        status=201, text=answer, content_type="text/plain", charset="utf-8",
        headers={"Location": f"/v1/realtime/calls/{call.id}",
                 RESUME_TOKEN_HEADER: call.resume_token},
    )


async def resume_call(request: web.Request) -> web.StreamResponse:
    """``POST /v1/realtime/calls/{id}/resume``: the call's client, on a new peer connection
    (its network changed), sends a new SDP offer with the call's resume token; 201 with the
    answer, and the call goes on there. The token is the credential (the key that created
    the call may have expired since): a request without it, or with another, gets 403."""
    call_id = request.match_info["call_id"]
    if (routed := await forward_to_owner(request, call_id)) is not None:
        return routed
    token = presented_token(request)
    call = request.app[REGISTRY].get(call_id)
    check_token(call, token)
    offer, session = await read_offer(request, request.app[SETTINGS].max_sdp_bytes)
    if session is not None:
        raise InvalidRequest("A resume carries no session: the call keeps its own.",
                             code="invalid_request", param="session")
    answer = await call.resume(offer, dcid=dcid_param(request.query.get("dcid")))
    return web.Response(
        status=201, text=answer, content_type="text/plain", charset="utf-8",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def hangup_call(request: web.Request) -> web.StreamResponse:
    """``POST /v1/realtime/calls/{id}/hangup``: end the call; 404 if there is none."""
    request.app[AUTH].authorize_call(credentials(request.headers))
    call_id = request.match_info["call_id"]
    if (routed := await forward_to_owner(request, call_id)) is not None:
        return routed
    call = request.app[REGISTRY].get(call_id)
    await call.close("hangup")
    return web.Response(status=200)


async def patch_call(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/realtime/calls/{id}``: where WHIP (RFC 9725) takes trickled candidates and
    ICE restarts. The relay does neither (aiortc cannot restart ICE on a live peer
    connection; the README says why): 405, as WHIP asks of a session that takes no PATCH,
    naming the way that works (a resume on a new peer connection)."""
    error = RelayError("This relay cannot restart ICE on a call's peer connection nor take "
                       "trickled candidates: to move a call to a new network, resume it on a "
                       "new peer connection (POST /v1/realtime/calls/{id}/resume with the "
                       "call's resume token).", code="ice_restart_unsupported")
    error.type = "invalid_request_error"
    return web.json_response(error.to_dict(), status=405, headers={"Allow": "GET"})


async def describe_call(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime/calls/{id}`` (server key): one call, live or lately ended."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    call_id = request.match_info["call_id"]
    if (routed := await forward_to_owner(request, call_id)) is not None:
        return routed
    return web.json_response(await request.app[REGISTRY].describe(call_id))


async def call_content(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime/calls/{id}/content`` (server key): the call's recording as a zip
    (relay/server/recording_api.py); 404 when there is none."""
    return await recording_content(request, request.match_info["call_id"])


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: mint a short-lived ``ek_`` key for a browser."""
    auth = request.app[AUTH]
    auth.require_server_key(credentials(request.headers))
    request.app[DRAIN].check()
    body = await read_json(request) if request.can_read_body else {}
    ttl = expires_after_seconds(body, DEFAULT_TTL)
    settings = request.app[SETTINGS]
    session, model = settings.session_rules.admit(body.get("session"))
    secret = auth.mint(session, ttl, record=record_field(body))
    # Typed clients (openai-python's ClientSecretCreateResponse) need the full session,
    # identity fields included, not just the fields that were asked for.
    described = effective_session(secret.session, model=model,
                                  expires_at=secret.expires_at)
    # The key seals a tool's credentials; the answer (read by whoever hands the key to a
    # browser, often the browser itself) does not repeat them.
    return web.json_response({"value": secret.value, "expires_at": secret.expires_at,
                              "session": conceal_tool_secrets(described)})


async def attach_sideband(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?call_id=…`` upgraded to a WebSocket (server key): a controller
    joins a live call's session. Without ``call_id`` it is a WebSocket session of its own
    (:func:`open_websocket_session`). Errors come before the upgrade, as JSON."""
    call_id = request.query.get("call_id")
    if not call_id:
        return await open_websocket_session(request)
    request.app[AUTH].require_server_key(credentials(request.headers))
    routed = await forward_to_owner(request, call_id,
                                    websocket_max_msg_size=SIDEBAND_MAX_MESSAGE_BYTES)
    if routed is not None:
        return routed
    call = request.app[REGISTRY].get(call_id)
    ws = web.WebSocketResponse(max_msg_size=SIDEBAND_MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to attach to a call.",
                             code="websocket_required")
    await ws.prepare(request)
    await call.serve_sideband(ws)
    return ws


async def open_websocket_session(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?model=…`` (or ``?intent=transcription``) upgraded to a
    WebSocket: a Realtime session bridged to the upstream, with a call's auth (a server
    key, a client secret, or a browser's key subprotocol), policy and limits."""
    app = request.app
    settings = app[SETTINGS]
    authorization = credentials(request.headers) or subprotocol_key(request.headers)
    secret_session = app[AUTH].authorize_call(authorization)
    key = app[AUTH].client_secret_id(authorization)
    ws = web.WebSocketResponse(max_msg_size=WS_SESSION_MAX_MESSAGE_BYTES, heartbeat=20,
                               protocols=(REALTIME_SUBPROTOCOL,))
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to open a Realtime session, or name "
                             "a live call with call_id to attach to it.",
                             code="websocket_required")
    await admit_websocket_session(request, key)
    intent = request.query.get("intent")
    if intent not in (None, "", "transcription"):
        raise InvalidRequest("intent must be 'transcription' when given.",
                             code="invalid_value", param="intent")
    layer = {"type": "transcription"} if intent == "transcription" else None
    session, model = settings.session_rules.admit(secret_session, layer,
                                                  query_model=request.query.get("model"))
    core = WebSocketSessionCore(
        random_id("sess_"), session, clock=asyncio.get_running_loop().time,
        policy=settings.policy, limits=message_limits(settings),
        redact=upstream_redactor(settings))
    return await serve_websocket_session(request, ws, core, app[UPSTREAM], key=key,
                                         model=model)
