"""The aiohttp application: factory, middlewares, and the handlers every protocol shares
(health, readiness, statistics, metrics, the demo page).

Each protocol family's endpoints live in a module of their own (the Realtime API's in
:mod:`.realtime_api`), added to the router here. Handlers are thin: they parse the request,
call into the registry or the protocol helpers, and shape the response. Every error becomes
the API's JSON error shape in :func:`error_middleware`, and every response carries CORS
headers so browser pages on other origins can create calls and read the ``Location`` header.
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

from ..cluster.node import Node
from ..config import Settings
from ..errors import RelayError
from ..protocol.redact import Redactor
from ..recording.recordings import Recordings, Retention
from ..upstream.client import LiveConnector, WebSocketConnector
from ..webrtc.udp_ports import UdpPorts
from .agent import CallAgents, load_agent
from .app_state import (
    AGENTS,
    AUTH,
    DRAIN,
    LIVE_UPSTREAM,
    LOOP_LAG,
    METRICS,
    NODE,
    PROBE,
    RECORDS,
    REGISTRY,
    SETTINGS,
    UPSTREAM,
    WS_SESSIONS,
)
from .auth import Authenticator, credentials
from .call_records import CallRecords
from .client_secrets import SecretSigner
from .drain import Drain
from .http_errors_log import handler_args
from .live_api import add_live_routes
from .loop_lag import LoopLagMonitor
from .prometheus import RelayCollector
from .readiness import UpstreamProbe
from .realtime_api import add_realtime_routes
from .registry import CallRegistry
from .resume_token import RESUME_TOKEN_HEADER
from .webhooks import WebhookSender
from .websocket_session import WebSocketSessions

logger = logging.getLogger(__name__)

__all__ = ["AGENTS", "AUTH", "DRAIN", "LOOP_LAG", "METRICS", "NODE", "PROBE", "RECORDS",
           "REGISTRY", "SETTINGS", "UPSTREAM", "create_app"]

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
    records = app[RECORDS] = _call_records(settings)
    app[REGISTRY] = CallRegistry(settings, ports, records)
    app[AUTH] = Authenticator(settings.relay_api_keys if settings.auth_mode == "token" else (),
                              signer=_signer(settings))
    app[DRAIN] = Drain(settings.drain_timeout)
    app[WS_SESSIONS] = WebSocketSessions()
    node = app[NODE] = Node(settings)
    app[REGISTRY].on_ended.append(node.limits.release_soon)
    if agent is not None:
        keys = settings.relay_api_keys
        app[AGENTS] = CallAgents(agent, server_key=keys[0] if keys else None,
                                 start_timeout=settings.agent_start_timeout)
        logger.info("serving the agent %s on every call", settings.agent)
    app[METRICS] = _metrics_registry(app)
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_records_ctx)
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_probe_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    if ports is not None:
        app.cleanup_ctx.append(_udp_ports_ctx)
    if settings.open_to_the_network:
        app.cleanup_ctx.append(_open_warning_ctx)
    app.on_shutdown.append(_close_calls)
    add_realtime_routes(app.router)
    add_live_routes(app.router)
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


def _call_records(settings: Settings) -> CallRecords:
    retention = Retention(max_age_seconds=settings.record_max_age_days * 86400,
                          max_bytes=int(settings.record_max_gb * 1e9))
    # Recordings are masked as the logs are: every secret the settings hold.
    recordings = Recordings(Path(settings.record_dir), retention,
                            Redactor(settings.secret_strings()))
    webhooks = None
    if settings.webhook_url and settings.webhook_secret:
        webhooks = WebhookSender(settings.webhook_url, settings.webhook_secret,
                                 retry_for=settings.webhook_retry_seconds)
    return CallRecords(settings, recordings, webhooks)


def _signer(settings: Settings) -> SecretSigner:
    if settings.signing_secret is None:
        logger.info("RELAY_SIGNING_SECRET is not set: client secrets minted now work only in "
                    "this process (set it to share them between relays or across restarts)")
        return SecretSigner.random()
    return SecretSigner(settings.signing_secret, settings.signing_secrets)


# ------------------------------------------------------------------- handlers

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
        values = {"relay_calls_active": ("Calls live now.", float(len(registry))),
                  "relay_websocket_sessions_active": (
                      "WebSocket sessions (GET /v1/realtime without a call) live now.",
                      float(len(app[WS_SESSIONS])))}
        lag = app.get(LOOP_LAG)
        if lag is not None:
            values["relay_event_loop_lag_seconds"] = (
                "How late the event loop ran a timer, last measured.", lag.lag)
            values["relay_event_loop_lag_max_seconds"] = (
                "The largest event-loop lag over the last 10 s.", lag.recent_max)
        records = app[RECORDS]
        values["relay_recordings_active"] = ("Calls being recorded now.",
                                             float(len(records.recordings)))
        if records.webhooks is not None:
            values["relay_webhooks_pending"] = (
                "Webhook events queued, not yet delivered (a receiver down shows here).",
                float(records.webhooks.pending))
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
        response.headers["Access-Control-Expose-Headers"] = f"Location, {RESUME_TOKEN_HEADER}"
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


async def _records_ctx(app: web.Application) -> AsyncIterator[None]:
    records = app[RECORDS]
    await records.recordings.start()
    if records.webhooks is not None:
        records.webhooks.start()
    try:
        yield
    finally:
        # The calls end first (their recordings are finished, their webhooks queued).
        await app[REGISTRY].close_all()
        await records.recordings.close()
        if records.webhooks is not None:
            await records.webhooks.close()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    target = settings.upstream_target()
    if target is not None:
        app[UPSTREAM] = WebSocketConnector(*target, model=settings.model)
        app[LIVE_UPSTREAM] = LiveConnector(*settings.live_upstream_target())
        yield
        return
    from ..upstream.local import LocalRealtimeServer

    server = LocalRealtimeServer(mode=settings.local_mode, mcp_urls=settings.local_mcp_urls,
                                 max_session_seconds=settings.local_session_seconds)
    await server.start("127.0.0.1", 0)
    app[UPSTREAM] = WebSocketConnector(server.url, {}, model=settings.model)
    app[LIVE_UPSTREAM] = LiveConnector(server.live_url, {})
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
    await app[WS_SESSIONS].close_all()
    await app[REGISTRY].close_all()
