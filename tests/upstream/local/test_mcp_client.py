"""The embedded server's MCP client against a real MCP server: what it lists, what a call
gives, and each failure in the hosted API's ``mcp_call`` error shapes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from openai.types.realtime import RealtimeMcpToolCall

from relay.upstream.local.mcp_client import (
    CONNECTION_FAILED,
    REQUEST_TIMEOUT,
    McpFailure,
    call_tool,
    list_tools,
)
from relay.upstream.local.mcp_tools import McpServer

from ...support.mcp_server import TOKEN, running_mcp_server


@pytest.fixture
async def mcp_url() -> AsyncIterator[str]:
    async with running_mcp_server() as url:
        yield url


def as_item(error: dict[str, object]) -> RealtimeMcpToolCall:
    """The error inside an ``mcp_call`` item, parsed by openai's own model."""
    return RealtimeMcpToolCall.model_validate({
        "id": "item_1", "type": "mcp_call", "server_label": "desk", "name": "t",
        "arguments": "{}", "error": error})


async def test_mcp_client_lists_every_tool_with_its_schema(mcp_url: str) -> None:
    tools = await list_tools(McpServer("desk", f"{mcp_url}/mcp"))
    by_name = {tool["name"]: tool for tool in tools}
    assert by_name["get_weather"]["input_schema"]["properties"]["city"]["type"] == "string"
    assert by_name["get_weather"]["description"] == "The weather in a city."


async def test_mcp_client_call_gives_the_tools_text(mcp_url: str) -> None:
    outcome = await call_tool(McpServer("desk", f"{mcp_url}/mcp"), "get_weather",
                              {"city": "Oslo"})
    assert (outcome.output, outcome.error) == ("Sunny in Oslo, 21 C", None)


async def test_mcp_client_tool_failure_is_a_tool_execution_error(mcp_url: str) -> None:
    outcome = await call_tool(McpServer("desk", f"{mcp_url}/mcp"), "explode", {})
    assert outcome.output is None and outcome.error is not None
    assert outcome.error["type"] == "tool_execution_error"
    as_item(outcome.error)


async def test_mcp_client_http_status_is_an_http_error(mcp_url: str) -> None:
    with pytest.raises(McpFailure) as failure:
        await list_tools(McpServer("desk", f"{mcp_url}/locked/mcp"))
    assert failure.value.error == {"type": "http_error", "code": 401,
                                   "message": "401 (Unauthorized)"}
    as_item(failure.value.error)
    # With the token it works: headers reach the server.
    server = McpServer("desk", f"{mcp_url}/locked/mcp",
                       headers=(("Authorization", f"Bearer {TOKEN}"),))
    assert await list_tools(server)
    assert TOKEN not in repr(server)


async def test_mcp_client_unreachable_server_is_a_protocol_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await call_tool(McpServer("desk", f"http://127.0.0.1:{port}/mcp"), "x", {})
    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["code"]) == ("protocol_error",
                                                             CONNECTION_FAILED)
    as_item(outcome.error)


async def test_mcp_client_slow_tool_times_out(mcp_url: str) -> None:
    outcome = await call_tool(McpServer("desk", f"{mcp_url}/mcp"), "stall", {}, timeout=1.0)
    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["code"]) == ("protocol_error",
                                                             REQUEST_TIMEOUT)
