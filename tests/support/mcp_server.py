"""A real MCP server for tests: the ``mcp`` package's own server side, streamable HTTP on a
loopback port, with a few tools (and a path behind a bearer token)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

#: The token the locked endpoint wants; it must never reach a client in an MCP event.
TOKEN = "sesame-7f3a9c"


def tool_server() -> MCPServer:
    server = MCPServer("weather-desk")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}, 21 C"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def get_time() -> str:
        """The time."""
        return "noon"

    @server.tool()
    async def stall() -> str:
        """Answers too late for any test's timeout."""
        await asyncio.sleep(30)
        return "late"

    @server.tool()
    def explode() -> str:
        """Always fails."""
        raise ValueError("kaboom")

    return server


def locked(app: Any) -> Any:
    """The MCP app, also at ``/locked/mcp`` where it wants ``Authorization: Bearer TOKEN``
    (else 401), as a real server behind auth would."""
    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/locked"):
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"no"})
                return
            scope = {**scope, "path": scope["path"][len("/locked"):], "raw_path": None}
        await app(scope, receive, send)
    return guarded


@contextlib.asynccontextmanager
async def running_mcp_server() -> AsyncIterator[str]:
    """A real MCP server on a loopback port while the block runs; its base URL
    (``/mcp`` the endpoint, ``/locked/mcp`` the one that wants ``Bearer TOKEN``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(locked(tool_server().streamable_http_app()),
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
