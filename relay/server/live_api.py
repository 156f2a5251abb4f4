"""The GPT-Live HTTP surface: ``/v1/live/sessions`` and its session controls.

A browser (or the official client's ``client.live.create``) posts JSON —
``{"session": MediaSessionConfig, "transport": {"type": "webrtc", "sdp": offer}}`` — and
gets ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp": answer}}`` back, as from
the hosted endpoint. The relay terminates the peer with the same call driver, media path,
registry, auth, limits and drain as a Realtime call; only the protocol core differs
(:class:`~relay.protocol.live.live_core.LiveCore`), and its upstream is a primary Live
WebSocket opened with the operator's key.

``GET /v1/live/sessions`` upgraded to a WebSocket is the primary WebSocket
(``client.live.connect()``), served by :mod:`.live_websocket`.

The hosted GPT-Live issues no client keys; the relay does: ``POST /v1/live/client_secrets``
(server key) mints an ``ek_`` key sealed to a Live configuration, whose fields a browser
creating its session with that key cannot change.

A session outlives its network path as a Realtime call does: the creation's answer carries
the session's resume token (``resume_token`` in the JSON, and the ``X-Relay-Resume-Token``
header as on a call's), and ``POST /v1/live/sessions/{id}/resume`` with it in that header
and a new offer, in the creation's ``transport`` shape, moves the session to the new peer
connection (:meth:`~.call_driver.CallDriver.resume`).

A stored session (``"store": true``, kept as its recording) can be forked once it has
ended: ``POST /v1/live/sessions/{id}/fork`` (server key) starts a new session with its
configuration (and the request's overrides) and its conversation, as text, in
``session.start``'s ``input``; ``GET`` there upgraded to a WebSocket is the WebSocket fork
(``client.live.forks.connect``, :mod:`.live_websocket`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import CallNotFound, InvalidRequest, LiveSessionNotFound
from ..protocol.live.live_config import (
    LIVE_SECRET_TYPE,
    apply_locks,
    check_config,
    check_servable,
    seal,
    sealed_live_config,
)
from ..protocol.live.live_core import LiveCore
from ..protocol.live.live_fork import fork_config
from ..protocol.realtime.policy import UNSET
from .app_state import AUTH, DRAIN, LIVE_UPSTREAM, REGISTRY, SETTINGS, forward_to_owner
from .auth import DEFAULT_TTL, credentials
from .call_admission import Caller, admit_caller, register_call
from .call_driver import CallDriver
from .live_stored import fork_base
from .live_websocket import open_live_fork, open_live_session
from .recording_api import record_requested, recording_content
from .requests import expires_after_seconds, read_json
from .resume_token import RESUME_TOKEN_HEADER, check_token, presented_token
from .sideband import MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

def add_live_routes(router: web.UrlDispatcher) -> None:
    """Route GPT-Live's endpoints to this module's handlers."""
    router.add_post("/v1/live/sessions", create_session)
    router.add_get("/v1/live/sessions", open_live_session)
    router.add_post("/v1/live/client_secrets", create_client_secret)
    router.add_get("/v1/live/sessions/{session_id}", describe_session)
    router.add_post("/v1/live/sessions/{session_id}/hangup", hangup_session)
    router.add_post("/v1/live/sessions/{session_id}/resume", resume_session)
    router.add_get("/v1/live/sessions/{session_id}/attach", attach_sideband)
    for control in ("accept", "reject", "refer"):
        router.add_post(f"/v1/live/sessions/{{session_id}}/{control}", sip_only)
    router.add_post("/v1/live/sessions/{session_id}/fork", fork_session)
    router.add_get("/v1/live/sessions/{session_id}/fork", open_live_fork)
    router.add_get("/v1/live/sessions/{session_id}/content", session_content)


async def create_session(request: web.Request) -> web.Response:
    """``POST /v1/live/sessions``: a Live configuration and an SDP offer in, the session id
    and the SDP answer out."""
    app = request.app
    settings = app[SETTINGS]
    caller = await admit_caller(request)
    body = await read_json(request)
    offer = _offer(body.get("transport"), settings.max_sdp_bytes)
    call, answer = await _start_session(
        request, caller, check_config(_sealed(caller.sealed, body.get("session")), media=True),
        offer)
    logger.info("live %s: created", call.id)
    return _created(call, answer)


async def resume_session(request: web.Request) -> web.StreamResponse:
    """``POST /v1/live/sessions/{id}/resume``: the session's client, on a new peer
    connection (its network changed), posts ``{"transport": {"type": "webrtc", "sdp":
    offer}}`` with the session's resume token in ``X-Relay-Resume-Token``; 201 with the
    creation's answer shape, and the session goes on there. The token is the credential,
    as for a call's resume: without it, or with another, 403; an unknown session, 404."""
    routed = await _route(request, request.match_info["session_id"])
    if routed is not None:
        return routed
    token = presented_token(request)
    call = _live_call(request)
    check_token(call, token)
    body = await read_json(request)
    if body.get("session") is not None:
        raise InvalidRequest("A resume carries no session: the session keeps its own.",
                             code="invalid_request", param="session")
    offer = _offer(body.get("transport"), request.app[SETTINGS].max_sdp_bytes)
    try:
        answer = await call.resume(offer)
    except CallNotFound as exc:  # it ended meanwhile
        raise LiveSessionNotFound() from exc
    logger.info("live %s: resumed on a new peer connection", call.id)
    return web.json_response({"session": {"id": call.id},
                              "transport": {"type": "webrtc", "sdp": answer}}, status=201)


async def hangup_session(request: web.Request) -> web.StreamResponse:
    """``POST /v1/live/sessions/{id}/hangup``: end the session; 404 when there is none."""
    request.app[AUTH].authorize_call(credentials(request.headers))
    routed = await _owned_session(request)
    if isinstance(routed, web.StreamResponse):
        return routed
    core = routed.core
    assert isinstance(core, LiveCore)
    core.hang_up()
    await routed.finish("hangup")
    return web.Response(status=200)


async def describe_session(request: web.Request) -> web.StreamResponse:
    """``GET /v1/live/sessions/{id}`` (server key): the per-session view."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    session_id = request.match_info["session_id"]
    routed = await _route(request, session_id)
    if routed is not None:
        return routed
    try:
        view = await request.app[REGISTRY].describe(session_id)
    except CallNotFound as exc:
        raise LiveSessionNotFound() from exc
    if view.get("object") != LiveCore.view_object:
        raise LiveSessionNotFound()
    return web.json_response(view)


async def attach_sideband(request: web.Request) -> web.StreamResponse:
    """``GET /v1/live/sessions/{id}/attach`` upgraded to a WebSocket (server key): a
    trusted server joins the session. Errors come before the upgrade, as JSON."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    routed = await _owned_session(request, websocket=True)
    if isinstance(routed, web.StreamResponse):
        return routed
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to attach to a Live session.",
                             code="websocket_required")
    await ws.prepare(request)
    await routed.serve_sideband(ws)
    return ws


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/live/client_secrets`` (server key): an ``ek_`` key for a browser, sealed
    to a Live configuration (the relay's own endpoint: the hosted GPT-Live has none)."""
    auth = request.app[AUTH]
    auth.require_server_key(credentials(request.headers))
    request.app[DRAIN].check()
    body = await read_json(request)
    ttl = expires_after_seconds(body, DEFAULT_TTL)
    config = apply_locks(check_config(body.get("session"), media=True),
                         request.app[SETTINGS].policy, UNSET)
    secret = auth.mint({"type": LIVE_SECRET_TYPE, **config}, ttl)
    return web.json_response({"value": secret.value, "expires_at": secret.expires_at,
                              "session": config})


async def sip_only(request: web.Request) -> web.Response:
    """``accept``, ``reject`` and ``refer`` control SIP calls, which the relay does not
    take."""
    control = request.path.rsplit("/", 1)[-1]
    raise InvalidRequest(
        f"'{control}' controls incoming SIP calls; the relay serves WebRTC sessions only.",
        code="unsupported_for_transport")


async def fork_session(request: web.Request) -> web.StreamResponse:
    """``POST /v1/live/sessions/{id}/fork`` (server key): a new WebRTC session from a
    stored one that has ended, in the creation's request shape with ``session`` =
    overrides (:func:`~relay.protocol.live.live_fork.fork_config`). Its configuration is
    the stored session's with those applied, checked as a create's is (the operator's
    locks hold), and its ``session.start`` carries the stored conversation as ``input``
    (read from the recording: :func:`~relay.protocol.live.live_restore.recorded_conversation`).
    The answer is the creation's (``SessionForkResponse``, the new session's resume
    token with it). 404 ``session_not_found``: no such Live session; 400
    ``session_not_stored``: it was not stored; 409 ``session_in_progress``: it has not
    ended (or its recording is being finished)."""
    app = request.app
    settings = app[SETTINGS]
    # The fork reads the stored conversation: who may download a recording may fork it.
    app[AUTH].require_server_key(credentials(request.headers))
    session_id = request.match_info["session_id"]
    routed = await _route(request, session_id)
    if routed is not None:
        return routed
    caller = await admit_caller(request)
    stored, carried, dropped = await fork_base(request, session_id)
    body = await read_json(request)
    offer = _offer(body.get("transport"), settings.max_sdp_bytes)
    call, answer = await _start_session(
        request, caller, check_config(fork_config(stored, body.get("session")), media=True),
        offer)
    logger.info("live %s: forked from %s (%d messages of its conversation, %d left out)",
                call.id, session_id, carried, dropped)
    return _created(call, answer)


async def session_content(request: web.Request) -> web.StreamResponse:
    """``GET /v1/live/sessions/{id}/content``: the session's recording as a zip (see
    :func:`~.recording_api.recording_content`)."""
    return await recording_content(request, request.match_info["session_id"])


# ------------------------------------------------------------------- helpers

async def _start_session(request: web.Request, caller: Caller, checked: dict[str, Any],
                         offer: str) -> tuple[CallDriver, str]:
    """A new Live WebRTC session on the ``checked`` configuration (the operator's locks
    applied, what the relay cannot serve refused), and its SDP answer to ``offer``."""
    app = request.app
    settings = app[SETTINGS]
    config = apply_locks(checked, settings.policy, UNSET)
    check_servable(config, offline=settings.uses_local_upstream)
    call = await register_call(request, caller, config, app[LIVE_UPSTREAM], config["model"],
                               record=record_requested(request) or _stored(caller, config),
                               core=LiveCore, protocol="live")
    return call, await call.start(offer)


def _created(call: CallDriver, answer: str) -> web.Response:
    """A creation's (or fork's) answer: the session id, the SDP answer, the resume token."""
    return web.json_response({"session": {"id": call.id},
                              "transport": {"type": "webrtc", "sdp": answer},
                              "resume_token": call.resume_token},
                             status=201, headers={RESUME_TOKEN_HEADER: call.resume_token})


def _offer(transport: Any, max_bytes: int) -> str:
    if not isinstance(transport, dict) or transport.get("type") != "webrtc":
        raise InvalidRequest("'transport' must be {\"type\": \"webrtc\", \"sdp\": ...}.",
                             code="invalid_value", param="transport.type")
    sdp = transport.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidRequest("Missing required parameter: 'transport.sdp'.",
                             code="missing_required_parameter", param="transport.sdp")
    if len(sdp.encode()) > max_bytes:
        raise InvalidRequest("The SDP offer is too large.", code="payload_too_large",
                             param="transport.sdp")
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidRequest("'transport.sdp' is not an SDP offer.", code="invalid_offer",
                             param="transport.sdp")
    return sdp


def _stored(caller: Caller, config: Mapping[str, Any]) -> bool:
    """Whether the session asks to be stored (GPT-Live's ``"store": true``), which the
    relay does by recording it (``GET .../content`` then downloads it): a server key may
    ask; a client secret's holder only if the key was minted with it (who is recorded is
    the operator's call, as with ``"record": true``)."""
    if config.get("store") is not True:
        return False
    if caller.sealed is not None and caller.sealed.get("store") is not True:
        raise InvalidRequest(
            "'session.store' is the operator's to set: mint the client secret with "
            "\"store\": true for its sessions to be stored.", code="invalid_value",
            param="session.store")
    return True


def _sealed(sealed: dict[str, Any] | None, requested: Any) -> Any:
    """The request's configuration under a sealed key's (its fields may be repeated, not
    changed: ``locked_field``); a Realtime key is refused."""
    config = sealed_live_config(sealed)
    if config is None:
        return requested
    if requested is not None and not isinstance(requested, dict):
        return requested  # check_config names the fault
    return seal(requested, config)


async def _route(request: web.Request, session_id: str, *,
                 websocket: bool = False) -> web.StreamResponse | None:
    """Forward the request to the relay that owns ``session_id`` (None: it is ours)."""
    try:
        return await forward_to_owner(
            request, session_id, websocket_max_msg_size=MAX_MESSAGE_BYTES if websocket else None)
    except CallNotFound as exc:
        raise LiveSessionNotFound() from exc


async def _owned_session(request: web.Request, *,
                         websocket: bool = False) -> CallDriver | web.StreamResponse:
    """This relay's live Live session the path names, or the owner's answer."""
    session_id = request.match_info["session_id"]
    routed = await _route(request, session_id, websocket=websocket)
    if routed is not None:
        return routed
    return _live_call(request)


def _live_call(request: web.Request) -> CallDriver:
    """This relay's live Live session the path names; 404 when there is none."""
    try:
        call = request.app[REGISTRY].get(request.match_info["session_id"])
    except CallNotFound as exc:
        raise LiveSessionNotFound() from exc
    if not isinstance(call.core, LiveCore):
        raise LiveSessionNotFound()
    return call
