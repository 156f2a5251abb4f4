"""The local server's MCP client: lists a server's tools and calls one, over streamable
HTTP with the official ``mcp`` package, and says what went wrong as the hosted Realtime
API does (``http_error`` with the status, ``protocol_error`` with the JSON-RPC code,
``tool_execution_error`` with the tool's own message).

Each job opens its own MCP session (``initialize``, the request, then close): a session
lives only as long as the call that needs it, so a server that goes away between calls is
simply met again. Headers (the tool's ``headers`` and its ``authorization``) go on every
request and nowhere else: no log line, error or event carries them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from .mcp_tools import McpOutcome, McpServer, listed_tool

logger = logging.getLogger(__name__)

#: How long one listing or one call may take, connection included.
MCP_TIMEOUT_S = 30.0
#: JSON-RPC codes for failures that are not the server's answer (the MCP SDK's own).
CONNECTION_FAILED = -32000
REQUEST_TIMEOUT = -32001


class McpFailure(Exception):
    """A listing or a call that failed: ``error`` in the hosted API's shape."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


async def list_tools(server: McpServer, timeout: float = MCP_TIMEOUT_S) -> list[dict[str, Any]]:
    """Every tool ``server`` offers (all pages), as ``mcp_list_tools`` items show them;
    :class:`McpFailure` when it cannot be listed."""
    async def run(client: Client) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):  # pages: a server that never stops paging is cut off
            page = await client.list_tools(cursor=cursor)
            tools += [listed_tool(tool.model_dump(by_alias=True, exclude_none=True))
                      for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools
    result: list[dict[str, Any]] = await _session(server, run, timeout)
    return result


async def call_tool(server: McpServer, name: str, arguments: dict[str, Any],
                    timeout: float = MCP_TIMEOUT_S) -> McpOutcome:
    """Call ``name`` on ``server``: its output text, or the error (the tool's own, as
    ``tool_execution_error``, or the connection's)."""
    async def run(client: Client) -> McpOutcome:
        result = await client.call_tool(name, arguments)
        text = _text_of(result.content, result.structured_content)
        if result.is_error:
            return McpOutcome(error={"type": "tool_execution_error",
                                     "message": text or "the tool failed"})
        return McpOutcome(output=text)
    try:
        outcome: McpOutcome = await _session(server, run, timeout)
    except McpFailure as failure:
        return McpOutcome(error=failure.error)
    return outcome


async def _session(server: McpServer, run: Any, timeout: float) -> Any:
    """Run ``run(client)`` in a fresh MCP session with ``server``, its failures turned
    into :class:`McpFailure`."""
    statuses: list[httpx2.Response] = []

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            statuses.append(response)

    http = create_mcp_http_client(headers=dict(server.headers),
                                  timeout=httpx2.Timeout(timeout))
    http.event_hooks["response"].append(note)
    try:
        async with asyncio.timeout(timeout), http:
            transport = streamable_http_client(server.url, http_client=http)
            async with Client(transport, read_timeout_seconds=timeout,
                              cache=None) as client:
                return await run(client)
    except TimeoutError as exc:
        raise McpFailure({"type": "protocol_error", "code": REQUEST_TIMEOUT,
                          "message": f"MCP server did not answer in {timeout:g} s"}) from exc
    except Exception as exc:  # the mcp package raises anyio's exception groups
        raise _failure(_leaf(exc), statuses) from exc


def _failure(exc: BaseException, statuses: list[httpx2.Response]) -> McpFailure:
    if statuses:
        status = statuses[-1].status_code
        return McpFailure({"type": "http_error", "code": status,
                           "message": f"{status} ({statuses[-1].reason_phrase})"})
    if isinstance(exc, MCPError):
        return McpFailure({"type": "protocol_error", "code": exc.code, "message": exc.message})
    if isinstance(exc, httpx2.TransportError):
        return McpFailure({"type": "protocol_error", "code": CONNECTION_FAILED,
                           "message": f"could not reach the MCP server: {exc}"})
    logger.debug("MCP session failed: %s", type(exc).__name__)
    return McpFailure({"type": "protocol_error", "code": CONNECTION_FAILED,
                       "message": f"the MCP session failed: {type(exc).__name__}"})


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _text_of(content: list[Any], structured: Any) -> str:
    """A tool result as text: its text blocks, else its structured result as JSON, else
    each block as JSON."""
    texts = [block.text for block in content if getattr(block, "type", None) == "text"]
    if texts:
        return "\n".join(texts)
    if structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return "\n".join(json.dumps(block.model_dump(mode="json", exclude_none=True))
                     for block in content)
