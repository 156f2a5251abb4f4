"""The aiohttp application: factory, middlewares and the HTTP handlers.

Handlers are thin: they parse the request, call into the registry or the protocol
helpers, and shape the response. Every error becomes the API's JSON error shape in
:func:`error_middleware`, and every response carries CORS headers so browser pages on
other origins can create calls and read the ``Location`` header.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.multipart import parse_content_disposition

from ..config import Settings
from ..errors import InvalidRequest, RelayError, UnsupportedMediaType
from ..protocol.session import (
    Session,
    choose_model,
    effective_session,
    layer_sessions,
    normalize_session,
)
from ..upstream.client import UpstreamConnector, WebSocketConnector
from .auth import DEFAULT_TTL, Authenticator, credentials
from .registry import CallRegistry
from .sideband import MAX_MESSAGE_BYTES as SIDEBAND_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", CallRegistry)
AUTH = web.AppKey("auth", Authenticator)
#: Where calls get their upstream Realtime sessions.
UPSTREAM = web.AppKey("upstream", UpstreamConnector)

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"
MAX_SDP_BYTES = 256 * 1024
#: Parts a call's form may have (it needs two: ``sdp`` and ``session``).
MAX_FORM_PARTS = 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, static_dir: Path | None = None) -> web.Application:
    """Build the relay's app; the upstream and the calls start and stop with it."""
    app = web.Application(middlewares=[cors_middleware, error_middleware],
                          client_max_size=MAX_SDP_BYTES * 4)
    app[SETTINGS] = settings
    app[REGISTRY] = CallRegistry(settings)
    app[AUTH] = Authenticator(settings.relay_api_keys)
    app.cleanup_ctx.append(_upstream_ctx)
    app.on_shutdown.append(_close_calls)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup_call)
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)
    app.router.add_get("/v1/realtime", attach_sideband)
    app.router.add_get("/healthz", health)
    app.router.add_get("/stats", stats)
    static = static_dir or STATIC_DIR
    if (static / "index.html").exists():
        index = static / "index.html"

        async def index_page(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", index_page)
        app.router.add_static("/static/", static)
    return app


# ------------------------------------------------------------------- handlers

async def create_call(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls``: an SDP offer in, 201 with the SDP answer out."""
    app = request.app
    settings = app[SETTINGS]
    secret_session = app[AUTH].authorize_call(credentials(request.headers))
    offer, client_session = await _read_offer(request)
    session = layer_sessions(settings.default_session, secret_session, client_session)
    model = choose_model(session, request.query.get("model"), default=settings.model,
                         allowed=settings.models)
    dcid = _dcid(request.query.get("dcid"))
    call = app[REGISTRY].new(session, app[UPSTREAM], model)
    answer = await call.start(offer, dcid=dcid)
    logger.info("call %s: created", call.id)
    return web.Response(
        status=201, text=answer, content_type="text/plain", charset="utf-8",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def hangup_call(request: web.Request) -> web.Response:
    """``POST /v1/realtime/calls/{id}/hangup``: end the call; 404 if there is none."""
    request.app[AUTH].authorize_call(credentials(request.headers))
    call = request.app[REGISTRY].get(request.match_info["call_id"])
    await call.close("hangup")
    return web.Response(status=200)


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: mint a short-lived ``ek_`` key for a browser."""
    auth = request.app[AUTH]
    auth.require_server_key(credentials(request.headers))
    body = await _read_json(request) if request.can_read_body else {}
    expires = body.get("expires_after") or {}
    if not isinstance(expires, dict):
        raise InvalidRequest("expires_after must be an object", code="invalid_type",
                             param="expires_after")
    if expires.get("anchor", "created_at") != "created_at":
        raise InvalidRequest("expires_after.anchor must be 'created_at'", code="invalid_value",
                             param="expires_after.anchor")
    ttl = expires.get("seconds", DEFAULT_TTL)
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise InvalidRequest("expires_after.seconds must be an integer", code="invalid_type",
                             param="expires_after.seconds")
    settings = request.app[SETTINGS]
    session = layer_sessions(settings.default_session, body.get("session"))
    model = choose_model(session, None, default=settings.model, allowed=settings.models)
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
    call = request.app[REGISTRY].get(call_id)
    ws = web.WebSocketResponse(max_msg_size=SIDEBAND_MAX_MESSAGE_BYTES, heartbeat=20)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade to a WebSocket to attach to a call.",
                             code="websocket_required")
    await ws.prepare(request)
    await call.serve_sideband(ws)
    return ws


async def health(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness and the number of live calls."""
    return web.json_response({"status": "ok", "calls": len(request.app[REGISTRY])})


async def stats(request: web.Request) -> web.Response:
    """``GET /stats`` (server key): every live call's counters, barge-ins included."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    return web.json_response({"calls": [call.stats() for call in request.app[REGISTRY]]})


# ---------------------------------------------------------------- middlewares

@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the API's JSON error shape."""
    try:
        return await handler(request)
    except RelayError as exc:
        return web.json_response(exc.to_dict(), status=exc.status)
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
    """Answer preflights and let any origin read responses, ``Location`` included."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        requested = request.headers.get("Access-Control-Request-Headers")
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            requested or "Authorization, Content-Type")
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
    response.headers["Access-Control-Expose-Headers"] = "Location"
    response.headers["Vary"] = "Origin"
    return response


# ------------------------------------------------------------------ lifecycle

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


async def _close_calls(app: web.Application) -> None:
    await app[REGISTRY].close_all()


# -------------------------------------------------------------------- parsing

async def _read_offer(request: web.Request) -> tuple[str, Session | None]:
    kind = request.content_type
    if kind == "multipart/form-data":
        parts = await _read_form(request, ("sdp", "session"))
        sdp = parts.get("sdp")
        if not sdp:
            raise InvalidRequest("The form has no 'sdp' part.", code="missing_required_parameter",
                                 param="sdp")
        raw_session = parts.get("session")
        session = None
        if raw_session:
            try:
                value = json.loads(raw_session)
            except ValueError as exc:
                raise InvalidRequest("The 'session' part is not valid JSON.",
                                     code="invalid_json", param="session") from exc
            session = normalize_session(value)
        return sdp, session
    if kind in ("application/sdp", "text/plain", "application/octet-stream", ""):
        body = await request.read()
        if len(body) > MAX_SDP_BYTES:
            raise InvalidRequest("The SDP offer is too large.", code="invalid_offer", param="sdp")
        try:
            return body.decode(request.charset or "utf-8"), None
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidRequest("The SDP offer is not text in its charset.",
                                 code="invalid_offer", param="sdp") from exc
    raise UnsupportedMediaType(
        f"Unsupported Content-Type {kind!r}: send application/sdp or multipart/form-data."
    )


async def _read_form(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    """The text of the form parts called ``names``; other parts are read and dropped.

    The parts are read here rather than with ``request.post()``, which hands a part over
    as ``str``, ``bytes`` or a file depending on its headers, decodes only ``text/*``
    parts with their charset, and fails without naming the part. Here every part is
    bytes decoded with its own charset (UTF-8 by default), whatever its Content-Type and
    whether or not it carries a filename, and every error names the part.
    """
    texts: dict[str, str] = {}
    try:
        reader = await request.multipart()
        for _ in range(MAX_FORM_PARTS):
            next_part = await reader.next()
            if next_part is None:
                return texts
            part, name = _named_part(next_part)
            data = await _read_part(part, name)
            if name in names:
                if name in texts:
                    raise InvalidRequest(f"The form has more than one {name!r} part.",
                                         code="invalid_value", param=name)
                texts[name] = _part_text(part, data, name)
    except (ValueError, RuntimeError) as exc:  # aiohttp's words for a malformed body
        raise InvalidRequest("The multipart/form-data body is malformed.",
                             code="invalid_multipart", param=None) from exc
    raise InvalidRequest(f"The form has more than {MAX_FORM_PARTS} parts.",
                         code="invalid_multipart")


def _named_part(part: MultipartReader | BodyPartReader) -> tuple[BodyPartReader, str]:
    if isinstance(part, MultipartReader):  # a part that is itself multipart/mixed
        _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        raise InvalidRequest("A form part may not be multipart itself.",
                             code="invalid_value", param=params.get("name"))
    if not part.name:
        raise InvalidRequest("A form part has no name in its Content-Disposition.",
                             code="invalid_multipart")
    return part, part.name


async def _read_part(part: BodyPartReader, name: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > MAX_SDP_BYTES:
            raise InvalidRequest(f"The {name!r} part is too large.", code="invalid_value",
                                 param=name)
    return bytes(data)


def _part_text(part: BodyPartReader, data: bytes, name: str) -> str:
    """``data`` decoded per the part's headers: transfer encoding, then charset."""
    charset = part.get_charset(default="utf-8")
    try:
        return bytes(part.decode(data)).decode(charset)
    except LookupError as exc:
        raise InvalidRequest(f"The {name!r} part names an unknown charset {charset!r}.",
                             code="invalid_value", param=name) from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The {name!r} part is not valid {charset} text.",
                             code="invalid_value", param=name) from exc
    except (ValueError, RuntimeError) as exc:  # bad base64, unknown transfer encoding
        raise InvalidRequest(f"The {name!r} part could not be decoded: {exc}",
                             code="invalid_value", param=name) from exc


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        value = await request.json()
    except ValueError as exc:
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_type")
    return value


def _dcid(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) > 65534:
        raise InvalidRequest("dcid must be a data channel id from 0 to 65534.",
                             code="invalid_value", param="dcid")
    return int(value)


