"""MCP tools in the embedded server, against a real MCP server: the ``mcp`` package's own
server side (streamable HTTP on loopback), started by each test; the embedded server is
reached over its real WebSocket, and every event validates against openai's types."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection, connect

from relay.upstream.local import LocalRealtimeServer

from ...support.mcp_server import TOKEN, running_mcp_server

Event = dict[str, Any]
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


@pytest.fixture
async def mcp_url() -> AsyncIterator[str]:
    """A real MCP server on a loopback port, for this test only; its base URL."""
    async with running_mcp_server() as url:
        yield url


Session = Callable[..., Awaitable["Client"]]


class Client:
    """A WebSocket client of the embedded server that keeps every event it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Event] = []

    async def send(self, event: Event) -> None:
        await self.ws.send(json.dumps(event))

    async def until(self, kind: str, predicate: Callable[[Event], bool] | None = None,
                    timeout: float = 15.0) -> Event:
        """Receive until an event of ``kind`` (matching ``predicate``) arrives."""
        async def find() -> Event:
            while True:
                event = json.loads(await self.ws.recv())
                SERVER_EVENT.validate_python(event)
                self.events.append(event)
                if event["type"] == kind and (predicate is None or predicate(event)):
                    return event
        return await asyncio.wait_for(find(), timeout)

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event["type"] == kind]

    async def say(self, text: str, **response: Any) -> None:
        await self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]}})
        await self.send({"type": "response.create", "response": response})


@pytest.fixture
async def session(mcp_url: str) -> AsyncIterator[Session]:
    """Open a session of an embedded server allowed to reach the test's MCP server,
    configured with the given MCP tool fields (text replies: nothing to pace)."""
    server = LocalRealtimeServer("parrot", mcp_urls=[mcp_url])
    await server.start()
    sockets: list[ClientConnection] = []

    async def open_session(tool: dict[str, Any] | None = None, **fields: Any) -> Client:
        # Unread events must not stall the close: the client keeps every message.
        ws = await connect(server.url, max_queue=None)
        sockets.append(ws)
        client = Client(ws)
        await client.until("session.created")
        body = {"type": "realtime", "output_modalities": ["text"], **fields}
        if tool is not None:
            body["tools"] = [{"type": "mcp", "server_label": "desk",
                              "server_url": f"{mcp_url}/mcp", **tool}]
        await client.send({"type": "session.update", "session": body})
        await client.until("session.updated")
        return client

    yield open_session
    for ws in sockets:
        await ws.close()
    await server.close()


async def test_mcp_tools_are_listed_in_an_mcp_list_tools_item(session: Session) -> None:
    client = await session({"require_approval": "never"})
    done = await client.until("mcp_list_tools.completed")
    [added] = [e for e in client.of("conversation.item.added")
               if e["item"]["type"] == "mcp_list_tools"]
    [progress] = client.of("mcp_list_tools.in_progress")
    assert progress["item_id"] == added["item"]["id"] == done["item_id"]
    assert added["item"]["tools"] == []
    [listed] = [e for e in client.of("conversation.item.done")
                if e["item"]["type"] == "mcp_list_tools"]
    tools = {tool["name"]: tool for tool in listed["item"]["tools"]}
    assert set(tools) == {"get_weather", "get_time", "stall", "explode"}
    assert listed["item"]["server_label"] == "desk"
    assert tools["get_weather"]["input_schema"]["required"] == ["city"]
    assert tools["get_weather"]["annotations"]["readOnlyHint"] is True
    # agents-js retrieves the item when it sees in_progress: it is in the conversation.
    await client.send({"type": "conversation.item.retrieve", "item_id": done["item_id"]})
    retrieved = await client.until("conversation.item.retrieved")
    assert retrieved["item"]["type"] == "mcp_list_tools"


async def test_mcp_call_runs_the_named_tool_and_the_answer_follows(session: Session) -> None:
    client = await session({"require_approval": "never"})
    await client.until("mcp_list_tools.completed")
    await client.say("What is the weather in Paris?")
    completed = await client.until("response.mcp_call.completed")
    first = await client.until("response.done")
    call = first["response"]["output"][0]
    assert call["type"] == "mcp_call" and call["name"] == "get_weather"
    assert call["server_label"] == "desk"
    assert json.loads(call["arguments"]) == {"city": "example"}
    assert call["output"] == "Sunny in example, 21 C" and call["error"] is None
    assert completed["item_id"] == call["id"]
    kinds = [e["type"] for e in client.events]
    order = ["response.created", "response.output_item.added", "response.mcp_call_arguments.delta",
             "response.mcp_call_arguments.done", "response.mcp_call.in_progress",
             "response.mcp_call.completed", "response.output_item.done", "response.done"]
    assert [kinds.index(kind) for kind in order] == sorted(kinds.index(kind) for kind in order)
    # A response of its own says what came out, with no response.create from the client.
    answer = await client.until("response.done")
    assert answer["response"]["id"] != first["response"]["id"]
    text = answer["response"]["output"][0]["content"][0]["text"]
    assert text == "I used get_weather: Sunny in example, 21 C"


async def test_mcp_allowed_tools_limit_what_is_listed_and_called(session: Session) -> None:
    client = await session({"require_approval": "never", "allowed_tools": ["get_time"]})
    await client.until("mcp_list_tools.completed")
    [listed] = [e for e in client.of("conversation.item.done")
                if e["item"]["type"] == "mcp_list_tools"]
    assert [tool["name"] for tool in listed["item"]["tools"]] == ["get_time"]
    await client.say("What is the weather in Paris?")
    done = await client.until("response.done")
    assert done["response"]["output"][0]["type"] == "message"  # get_weather is not allowed
    await client.say("And the time?")
    done = await client.until("response.done", lambda e: e["response"]["output"][0]["type"]
                              == "mcp_call")
    assert done["response"]["output"][0]["output"] == "noon"


async def test_mcp_approval_request_then_the_clients_approval_runs_the_call(
        session: Session) -> None:
    # The read-only tools need no approval; anything else does (the hosted default).
    client = await session({"require_approval": {"never": {"read_only": True}}},
                           tool_choice={"type": "mcp", "server_label": "desk",
                                        "name": "explode"})
    await client.until("mcp_list_tools.completed")
    await client.say("Blow it up.")
    asked = await client.until("conversation.item.done",
                               lambda e: e["item"]["type"] == "mcp_approval_request")
    request = asked["item"]
    assert (request["name"], request["server_label"]) == ("explode", "desk")
    done = await client.until("response.done")
    assert done["response"]["output"][0]["type"] == "mcp_approval_request"
    assert not client.of("response.mcp_call.in_progress")
    # As agents-js answers: the item alone, after the request; no response.create.
    await client.send({"type": "conversation.item.create", "previous_item_id": request["id"],
                       "item": {"type": "mcp_approval_response",
                                "approval_request_id": request["id"], "approve": True}})
    failed = await client.until("response.mcp_call.failed")
    call = await client.until("response.done")
    item = call["response"]["output"][0]
    assert item["id"] == failed["item_id"]
    assert item["approval_request_id"] == request["id"]
    assert item["error"]["type"] == "tool_execution_error"
    assert "explode" in item["error"]["message"]
    answer = await client.until("response.done")
    text = answer["response"]["output"][0]["content"][0]["text"]
    assert text.startswith("I could not use explode:")


async def test_mcp_declined_approval_is_reported_and_nothing_is_called(
        session: Session) -> None:
    client = await session({})  # require_approval unset: always ask
    await client.until("mcp_list_tools.completed")
    await client.say("weather please")
    asked = await client.until("conversation.item.done",
                               lambda e: e["item"]["type"] == "mcp_approval_request")
    await client.until("response.done")
    await client.send({"type": "conversation.item.create", "item": {
        "type": "mcp_approval_response", "approval_request_id": asked["item"]["id"],
        "approve": False, "reason": "not now"}})
    answer = await client.until("response.done")
    assert answer["response"]["output"][0]["content"][0]["text"] == (
        "I did not use the tool: you declined: not now.")
    assert not client.of("response.mcp_call.in_progress")


async def test_mcp_declined_forced_tool_is_not_asked_for_again(session: Session) -> None:
    client = await session({}, tool_choice={"type": "mcp", "server_label": "desk",
                                            "name": "explode"})
    await client.until("mcp_list_tools.completed")
    await client.say("Blow it up.")
    asked = await client.until("conversation.item.done",
                               lambda e: e["item"]["type"] == "mcp_approval_request")
    await client.until("response.done")
    await client.send({"type": "conversation.item.create", "item": {
        "type": "mcp_approval_response", "approval_request_id": asked["item"]["id"],
        "approve": False}})
    answer = await client.until("response.done")
    assert answer["response"]["output"][0]["type"] == "message"
    await asyncio.sleep(0.3)  # nothing more comes: no second request
    client.events += [json.loads(m) for m in await drain(client.ws)]
    assert len([e for e in client.events if e["type"] == "conversation.item.done"
                and e["item"]["type"] == "mcp_approval_request"]) == 1


async def drain(ws: ClientConnection) -> list[str]:
    """Messages already received and not read yet."""
    messages: list[str] = []
    while True:
        try:
            messages.append(str(await asyncio.wait_for(ws.recv(), 0.05)))
        except TimeoutError:
            return messages


async def test_mcp_approval_response_for_no_request_is_refused(session: Session) -> None:
    client = await session()
    await client.send({"type": "conversation.item.create", "event_id": "e1", "item": {
        "type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}})
    error = await client.until("error")
    assert error["error"]["param"] == "item.approval_request_id"


async def test_mcp_authorization_reaches_the_server_and_never_an_event(
        session: Session, mcp_url: str) -> None:
    client = await session({"require_approval": "never", "authorization": TOKEN,
                            "server_url": f"{mcp_url}/locked/mcp"})
    await client.until("mcp_list_tools.completed")
    await client.say("What time is it?")
    await client.until("response.done", lambda e: e["response"]["output"][0]["type"]
                       == "message")
    assert client.of("response.mcp_call.completed")
    for event in client.events:  # session.updated included: it keeps credentials back
        assert TOKEN not in json.dumps(event), event["type"]
    [updated] = client.of("session.updated")
    assert "authorization" not in updated["session"]["tools"][0]


async def test_mcp_listing_failure_is_reported_as_the_hosted_api_does(
        session: Session, mcp_url: str) -> None:
    client = await session({"require_approval": "never",
                            "server_url": f"{mcp_url}/locked/mcp"})
    failed = await client.until("mcp_list_tools.failed")
    error = await client.until("error")
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] == ("Error retrieving tool list from MCP server: 'desk'. "
                                         "Http status code: 401 (Unauthorized)")
    assert failed["item_id"]
    # The session goes on without that server's tools.
    await client.say("What is the weather in Paris?")
    done = await client.until("response.done")
    assert done["response"]["output"][0]["type"] == "message"


async def test_mcp_server_not_allowed_is_refused(session: Session) -> None:
    client = await session()
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [{
        "type": "mcp", "server_label": "elsewhere", "server_url": "http://10.0.0.1/mcp"}]}})
    error = await client.until("error")
    assert error["error"]["param"] == "session.tools[0].server_url"
    assert error["error"]["code"] == "mcp_server_not_allowed"
    assert not client.of("mcp_list_tools.in_progress")


async def test_mcp_response_waits_for_the_listing(session: Session, mcp_url: str) -> None:
    client = await session()
    # The response brings its own tool: it is announced, and goes on once it is listed.
    await client.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "the time, please"}]}})
    await client.send({"type": "response.create", "response": {"tools": [{
        "type": "mcp", "server_label": "desk", "require_approval": "never",
        "server_url": f"{mcp_url}/mcp"}]}})
    done = await client.until("response.done")
    kinds = [e["type"] for e in client.events]
    assert kinds.index("response.created") < kinds.index("mcp_list_tools.completed") \
        < kinds.index("response.output_item.added")
    assert done["response"]["output"][0]["type"] == "mcp_call"
    assert done["response"]["output"][0]["output"] == "noon"
