"""Forwarding a follow-up request to the relay that owns its call: HTTP and WebSocket.

The request goes on as the client sent it — method, path and query, body streamed, its
own ``Authorization`` / ``api-key`` / ``Origin`` — so the owner authenticates it exactly as
if it had come straight there; there is no internal bypass. The owner's answer (status,
headers, body) comes back as it is. A WebSocket upgrade is accepted from the client only
once the owner has accepted its own, so a refusal (401, 404) reaches the client as the
same HTTP answer; after that, text, binary and close frames are piped both ways, close
codes and reasons kept.

Forwarded requests carry :data:`FORWARDED_HEADER`; a relay never forwards such a request
again (relay/cluster/node.py), so no misconfiguration can make requests go round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from ..errors import CallNotFound, RoutingUnavailable

logger = logging.getLogger(__name__)

#: Marks a request one relay forwarded to another (the loop guard).
FORWARDED_HEADER = "Relay-Forwarded"

#: Seconds to reach the owner, and the longest it may stay silent while answering.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
#: Bytes per chunk of a streamed body.
CHUNK = 64 * 1024
#: Ping period of forwarded WebSockets on both sides (as the sideband's own).
HEARTBEAT = 20.0

#: Headers of one hop only (RFC 9110 §7.6.1), and those each hop sets itself.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "server", "date",
})
#: The WebSocket handshake's own headers, which each hop negotiates for itself.
_HANDSHAKE = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-accept", "sec-websocket-protocol",
})

#: Close codes a peer may not send (RFC 6455 §7.4.1) and what is sent on in their place.
_UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}


def passed_on(headers: Mapping[str, str], *, websocket: bool = False) -> list[tuple[str, str]]:
    """The headers of one hop that go on to the next (every one but the hop's own)."""
    dropped = _HOP_BY_HOP | _HANDSHAKE if websocket else _HOP_BY_HOP
    return [(name, value) for name, value in headers.items() if name.lower() not in dropped]


def sendable_close_code(code: int | None) -> int:
    """A close code that can be sent on, for the one received (or its absence)."""
    if code is None:
        return 1000
    return _UNSENDABLE.get(code, code)


def _owner_gone(exc: BaseException) -> bool:
    # Refused, or no socket at all: nothing listens where the owner was. Its entry is
    # stale (it died within the TTL) and its calls ended with it.
    return isinstance(exc, ConnectionRefusedError | FileNotFoundError)


def _unreachable(exc: BaseException) -> RoutingUnavailable:
    return RoutingUnavailable("The relay that owns this call did not answer; try again "
                              "shortly.", retry_after=5)


# -------------------------------------------------------------------------- HTTP


async def forward_http(request: web.Request, address: str) -> web.StreamResponse:
    """Send ``request`` on to the relay at ``address`` and stream its answer back."""
    path = address.removeprefix("unix:") if address.startswith("unix:") else None
    base = "http://relay" if path is not None else address
    connector = aiohttp.UnixConnector(path) if path is not None else aiohttp.TCPConnector()
    headers = [*passed_on(request.headers), (FORWARDED_HEADER, "1")]
    body = request.content.iter_chunked(CHUNK) if request.body_exists else None
    timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     timeout=timeout) as session:
        try:
            answer = await session.request(request.method, base + request.path_qs,
                                           headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientConnectorError as exc:
            raise (CallNotFound() if _owner_gone(exc.os_error) else _unreachable(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(exc) from exc
        async with answer:
            return await _stream_back(request, answer)


async def _stream_back(request: web.Request,
                       answer: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=answer.status, reason=answer.reason)
    for name, value in passed_on(answer.headers):
        response.headers.add(name, value)
    if answer.content_length is not None:
        response.content_length = answer.content_length
    await response.prepare(request)
    try:
        async for chunk in answer.content.iter_chunked(CHUNK):
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError, ConnectionResetError):
        # Too late for an error answer: the status went out. Cut the client off (if it is
        # still there), so it sees a truncated answer rather than a complete-looking one.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


# --------------------------------------------------------------------- WebSocket


async def forward_websocket(request: web.Request, address: str, *,
                            max_msg_size: int) -> web.StreamResponse:
    """Open the same WebSocket on the relay at ``address``; then accept the client's and
    pipe the two together until either closes. A refusal is answered as the owner gave it."""
    try:
        upstream = await _connect(request, address, max_msg_size)
    except InvalidStatus as exc:
        refused = exc.response
        response = web.Response(status=refused.status_code, body=refused.body)
        for name, value in passed_on(refused.headers):
            response.headers.add(name, value)
        return response
    except OSError as exc:
        raise (CallNotFound() if _owner_gone(exc) else _unreachable(exc)) from exc
    except (InvalidHandshake, TimeoutError) as exc:
        raise _unreachable(exc) from exc
    try:
        protocols = (upstream.subprotocol,) if upstream.subprotocol else ()
        ws = web.WebSocketResponse(max_msg_size=max_msg_size, heartbeat=HEARTBEAT,
                                   protocols=protocols)
        await ws.prepare(request)
        await _pipe(ws, upstream)
        return ws
    finally:
        await upstream.close()


async def _connect(request: web.Request, address: str, max_msg_size: int) -> ClientConnection:
    path = address.removeprefix("unix:") if address.startswith("unix:") else None
    uri = ("ws://relay" if path is not None else "ws" + address.removeprefix("http")
           ) + request.path_qs
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    where: dict[str, Any] = {"unix": True, "path": path} if path is not None else {}
    handshake = connect(
        uri, **where,
        additional_headers=[*passed_on(request.headers, websocket=True),
                            (FORWARDED_HEADER, "1")],
        subprotocols=[Subprotocol(p.strip()) for p in offered.split(",") if p.strip()] or None,
        # The client's own User-Agent and Origin went on with its headers.
        user_agent_header=None, origin=None, compression=None, proxy=None,
        max_size=max_msg_size, open_timeout=CONNECT_TIMEOUT, ping_interval=HEARTBEAT,
        ping_timeout=HEARTBEAT)
    return await handshake


async def _pipe(client: web.WebSocketResponse, owner: ClientConnection) -> None:
    """Frames both ways until one side closes; the other is then closed with its code."""
    loop = asyncio.get_running_loop()
    tasks = {loop.create_task(_client_to_owner(client, owner), name="forward:client"),
             loop.create_task(_owner_to_client(owner, client), name="forward:owner")}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _client_to_owner(client: web.WebSocketResponse, owner: ClientConnection) -> None:
    code, reason = 1000, ""
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = await client.receive()
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await owner.send(message.data)
            elif message.type == WSMsgType.CLOSE:
                code, reason = sendable_close_code(message.data), message.extra or ""
                break
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                code = sendable_close_code(client.close_code)
                break
    await owner.close(code=code, reason=reason)


async def _owner_to_client(owner: ClientConnection, client: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionClosed, ConnectionResetError):
        async for data in owner:
            if isinstance(data, str):
                await client.send_str(data)
            else:
                await client.send_bytes(data)
    await client.close(code=sendable_close_code(owner.close_code),
                       message=(owner.close_reason or "").encode())
