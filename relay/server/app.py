"""The aiohttp application: factory, middlewares and the HTTP handlers.

Handlers are thin: they parse the request, call into the registry or the protocol
helpers, and shape the response. Every error becomes the API's JSON error shape in
:func:`error_middleware`, and every response carries CORS headers so browser pages on
other origins can create calls and read the ``Location`` header.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..cluster.forward import FORWARDED_HEADER, forward_http, forward_websocket
from ..cluster.node import Node
from ..config import Settings
from ..errors import InvalidRequest, RelayError
from ..protocol.session import effective_session
from ..upstream.client import UpstreamConnector, WebSocketConnector
from ..webrtc.udp_ports import UdpPorts
from .agent import CallAgents, load_agent, loopback_base
from .auth import DEFAULT_TTL, Authenticator, credentials
from .client_secrets import SecretSigner
from .drain import Drain
from .http_errors_log import handler_args
from .loop_lag import LoopLagMonitor
from .metrics import RelayCollector
from .readiness import UpstreamProbe
from .registry import CallRegistry
from .requests import dcid_param, expires_after_seconds, read_json, read_offer
from .sideband import MAX_MESSAGE_BYTES as SIDEBAND_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", CallRegistry)
AUTH = web.AppKey("auth", Authenticator)
#: This relay's owner id, where it finds the relays that own other calls, and its limits
#: (how fast calls may be created, how many one client secret may hold: in this process,
#: or across the cluster through Redis).
NODE = web.AppKey("node", Node)
#: Where calls get their upstream Realtime sessions.
UPSTREAM = web.AppKey("upstream", UpstreamConnector)
#: The agent served on every call (``--agent``), when there is one.
AGENTS = web.AppKey("agents", CallAgents)
#: This app's Prometheus registry (never prometheus_client's global one).
METRICS = web.AppKey("metrics", CollectorRegistry)
#: The remote upstream's reachability (absent with the embedded upstream).
PROBE = web.AppKey("probe", UpstreamProbe)
#: The event loop's lag, measured while the app runs.
LOOP_LAG = web.AppKey("loop_lag", LoopLagMonitor)
#: Whether the relay still takes calls (relay/server/drain.py); relay/server/run.py begins
#: the drain on SIGTERM, and the app's cleanup runs only once it is over.
DRAIN = web.AppKey("drain", Drain)

#: Seconds between the warnings that auth is open on a public address.
OPEN_WARNING_INTERVAL = 60.0

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, static_dir: Path | None = None) -> web.Application:
    """Build the relay's app; the upstream and the calls start and stop with it.

    Raises :class:`~relay.errors.ConfigError` when a setting cannot work (token mode
    without keys above all: it would otherwise let anyone in) or ``settings.agent`` cannot
    be served.
    """
    settings.validate()
    # The agent first: a spec that cannot be served stops the relay before anything else.
    agent = load_agent(settings.agent) if settings.agent is not None else None
    app = web.Application(middlewares=[cors_middleware, error_middleware],
                          client_max_size=settings.max_body_bytes,
                          handler_args=handler_args())
    app[SETTINGS] = settings
    ports = UdpPorts(settings.udp_ports) if settings.udp_ports is not None else None
    app[REGISTRY] = CallRegistry(settings, ports)
    app[AUTH] = Authenticator(settings.relay_api_keys if settings.auth_mode == "token" else (),
                              signer=_signer(settings))
    app[DRAIN] = Drain(settings.drain_timeout)
    node = app[NODE] = Node(settings)
    app[REGISTRY].on_ended.append(node.limits.release_soon)
    if agent is not None:
        keys = settings.relay_api_keys
        app[AGENTS] = CallAgents(agent, server_key=keys[0] if keys else None,
                                 start_timeout=settings.agent_start_timeout)
        logger.info("serving the agent %s on every call", settings.agent)
    app[METRICS] = _metrics_registry(app)
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_probe_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    if ports is not None:
        app.cleanup_ctx.append(_udp_ports_ctx)
    if settings.open_to_the_network:
        app.cleanup_ctx.append(_open_warning_ctx)
    app.on_shutdown.append(_close_calls)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup_call)
    app.router.add_get("/v1/realtime/calls/{call_id}", describe_call)
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_get("/v1/realtime", attach_sideband)
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    static = static_dir or STATIC_DIR
    if (static / "index.html").exists():
        index = static / "index.html"

        async def index_page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", index_page)
        app.router.add_static("/static/", static)
    return app


def _signer(settings: Settings) -> SecretSigner:
    if settings.signing_secret is None:
        logger.info("RELAY_SIGNING_SECRET is not set: client secrets minted now work only in "
                    "this process (set it to share them between relays or across restarts)")
        return SecretSigner.random()
    return SecretSigner(settings.signing_secret, settings.signing_secrets)


# ------------------------------------------------------------------- handlers

async def create_call(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls``: an SDP offer in, 201 with the SDP answer out."""
    app = request.app
    settings = app[SETTINGS]
    secret_session = app[AUTH].authorize_call(credentials(request.headers))
    key = app[AUTH].client_secret_id(credentials(request.headers))
    app[DRAIN].check()
    await app[NODE].limits.admit(request.remote, key)
    offer, client_session = await read_offer(request, settings.max_sdp_bytes)
    session, model = settings.session_rules.admit(secret_session, client_session,
                                                  query_model=request.query.get("model"))
    dcid = dcid_param(request.query.get("dcid"))
    call_id = app[NODE].new_call_id()
    await app[NODE].limits.hold(key, call_id)
    try:
        call = app[REGISTRY].new(session, app[UPSTREAM], model, call_id=call_id)
    except BaseException:
        app[NODE].limits.release_soon(call_id)
        raise
    answer = await call.start(offer, dcid=dcid)
    logger.info("call %s: created", call.id)
    agents = app.get(AGENTS)
    if agents is not None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        agents.serve(call, loopback_base(sockname, settings))
    return web.Response(
        status=201, text=answer, content_type="text/plain", charset="utf-8",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def hangup_call(request: web.Request) -> web.StreamResponse:
    """``POST /v1/realtime/calls/{id}/hangup``: end the call; 404 if there is none."""
    request.app[AUTH].authorize_call(credentials(request.headers))
    call_id = request.match_info["call_id"]
    owner = await _owner_address(request, call_id)
    if owner is not None:
        return await forward_http(request, owner)
    call = request.app[REGISTRY].get(call_id)
    await call.close("hangup")
    return web.Response(status=200)


async def describe_call(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime/calls/{id}`` (server key): one call, live or lately ended."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    call_id = request.match_info["call_id"]
    owner = await _owner_address(request, call_id)
    if owner is not None:
        return await forward_http(request, owner)
    return web.json_response(await request.app[REGISTRY].describe(call_id))


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: mint a short-lived ``ek_`` key for a browser."""
    auth = request.app[AUTH]
    auth.require_server_key(credentials(request.headers))
    request.app[DRAIN].check()
    body = await read_json(request) if request.can_read_body else {}
    ttl = expires_after_seconds(body, DEFAULT_TTL)
    settings = request.app[SETTINGS]
    session, model = settings.session_rules.admit(body.get("session"))
    secret = auth.mint(session, ttl)
    # Typed clients (openai-python's ClientSecretCreateResponse) need the full session,
    # identity fields included, not just the fields that were asked for.
    described = effective_session(secret.session, model=model,
                                  expires_at=secret.expires_at)
    return web.json_response({"value": secret.value, "expires_at": secret.expires_at,
                              "session": described})


async def attach_sideband(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?call_id=…`` upgraded to a WebSocket (server key): a controller
    joins a live call's session. Errors come before the upgrade, as JSON."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    call_id = request.query.get("call_id")
    if not call_id:
        raise InvalidRequest("call_id is required: this endpoint attaches to a live call.",
                             code="missing_required_parameter", param="call_id")
    owner = await _owner_address(request, call_id)
    if owner is not None:
        return await forward_websocket(request, owner, max_msg_size=SIDEBAND_MAX_MESSAGE_BYTES)
    call = request.app[REGISTRY].get(call_id)
    ws = web.WebSocketResponse(max_msg_size=SIDEBAND_MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to attach to a call.",
                             code="websocket_required")
    await ws.prepare(request)
    await call.serve_sideband(ws)
    return ws


async def _owner_address(request: web.Request, call_id: str) -> str | None:
    """None when the call is this relay's, else where its owner listens (the request is
    then forwarded there). A request that was forwarded already is never forwarded again."""
    return await request.app[NODE].locate(call_id,
                                          forwarded=FORWARDED_HEADER in request.headers)


async def health(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness, the number of live calls, whether the relay is draining,
    and which process answered (its worker index under ``--workers``, and its PID)."""
    app = request.app
    return web.json_response({"status": "ok", "calls": len(app[REGISTRY]),
                              "draining": app[DRAIN].draining,
                              "worker": app[SETTINGS].worker_index, "pid": os.getpid()})


async def ready(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when a call can be taken now (not draining, the upstream
    reachable, a call slot free), else 503 with the reason."""
    app = request.app
    calls, limit = len(app[REGISTRY]), app[SETTINGS].max_calls
    probe = app.get(PROBE)
    reason = "draining" if app[DRAIN].draining else probe.problem if probe is not None else None
    if reason is None and calls >= limit:
        reason = f"at the limit of {limit} concurrent calls"
    body = {"status": "ready" if reason is None else "not_ready", "calls": calls,
            "max_calls": limit}
    if reason is not None:
        body["reason"] = reason
    return web.json_response(body, status=200 if reason is None else 503)


async def stats(request: web.Request) -> web.Response:
    """``GET /stats`` (server key): every live call's counters, barge-ins included."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    return web.json_response({"calls": [call.stats() for call in request.app[REGISTRY]]})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` (server key): the Prometheus text exposition."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _metrics_registry(app: web.Application) -> CollectorRegistry:
    registry = app[REGISTRY]

    def gauges() -> dict[str, tuple[str, float]]:
        values = {"relay_calls_active": ("Calls live now.", float(len(registry)))}
        lag = app.get(LOOP_LAG)
        if lag is not None:
            values["relay_event_loop_lag_seconds"] = (
                "How late the event loop ran a timer, last measured.", lag.lag)
            values["relay_event_loop_lag_max_seconds"] = (
                "The largest event-loop lag over the last 10 s.", lag.recent_max)
        return values

    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_registry.register(RelayCollector(registry.totals, lambda: registry, gauges))
    return metrics_registry


# ---------------------------------------------------------------- middlewares

@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the API's JSON error shape."""
    try:
        return await handler(request)
    except RelayError as exc:
        response = web.json_response(exc.to_dict(), status=exc.status)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = RelayError(exc.reason, code=exc.reason.lower().replace(" ", "_"))
        error.type = "invalid_request_error" if exc.status < 500 else "server_error"
        return web.json_response(error.to_dict(), status=exc.status)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        error = RelayError("The relay had an internal error.", code="internal_error")
        return web.json_response(error.to_dict(), status=500)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights, and let the allowed origins (``RELAY_CORS_ORIGINS``) read
    responses, ``Location`` included. Other origins get no allow headers at all."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin_allowed(origin,
                                                    request.app[SETTINGS].allowed_origins)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        if allowed:
            requested = request.headers.get("Access-Control-Request-Headers")
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                requested or "Authorization, Content-Type")
            response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if allowed and origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Location"
    response.headers["Vary"] = "Origin"
    return response


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """True when a page of ``origin`` may read the relay's answers (``*`` allows any)."""
    return "*" in allowed or origin.rstrip("/").lower() in (a.lower() for a in allowed)


# ------------------------------------------------------------------ lifecycle

async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    await node.start()
    try:
        yield
    finally:
        await node.close()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    target = settings.upstream_target()
    if target is not None:
        app[UPSTREAM] = WebSocketConnector(*target, model=settings.model)
        yield
        return
    from ..upstream.local import LocalRealtimeServer

    server = LocalRealtimeServer(mode=settings.local_mode)
    await server.start("127.0.0.1", 0)
    app[UPSTREAM] = WebSocketConnector(server.url, {}, model=settings.model)
    logger.info("using the embedded local Realtime server (%s mode)", server.mode)
    try:
        yield
    finally:
        await app[REGISTRY].close_all()
        await server.close()


async def _probe_ctx(app: web.Application) -> AsyncIterator[None]:
    # The embedded upstream is reachable for as long as the app runs: no probe.
    target = app[SETTINGS].upstream_target()
    if target is None:
        yield
        return
    registry = app[REGISTRY]
    probe = app[PROBE] = UpstreamProbe(target[0], busy=registry.upstream_connected)
    probe.start()
    try:
        yield
    finally:
        await probe.close()


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY]
    monitor = app[LOOP_LAG] = LoopLagMonitor(app[SETTINGS].loop_lag_warning,
                                             lambda: len(registry))
    monitor.start()
    try:
        yield
    finally:
        await monitor.close()


async def _udp_ports_ctx(app: web.Application) -> AsyncIterator[None]:
    ports = app[REGISTRY].ports
    assert ports is not None
    await ports.start(app[SETTINGS].ice_addresses)
    try:
        yield
    finally:
        await app[REGISTRY].close_all()
        await ports.close()


async def _open_warning_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_warn_open(app[SETTINGS]))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _warn_open(settings: Settings) -> None:
    # Repeated, so it shows in any window of the log someone happens to read.
    while True:
        logger.warning("auth is open on %s: anyone who can reach it may create calls on "
                       "this relay's upstream; set RELAY_API_KEYS and drop --auth open",
                       settings.host)
        await asyncio.sleep(OPEN_WARNING_INTERVAL)


async def _close_calls(app: web.Application) -> None:
    await app[REGISTRY].close_all()
