"""The MCP servers a local session has listed: one ``mcp_list_tools`` item each, the jobs
that list them, and what responses may call once they are listed (sans-I/O)."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequest
from ...protocol.events import Event, error_event
from .conversation import Conversation, Item, new_item_id
from .mcp_tools import (
    ListMcpTools,
    McpListing,
    McpServer,
    is_allowed,
    list_tools_item,
    mcp_servers,
)
from .response import server_event


class McpCatalog:
    """Listings by server (label, URL and headers), in the order they were asked for."""

    def __init__(self) -> None:
        self._listings: dict[tuple[Any, ...], McpListing] = {}

    def sync(self, tools: Any, conversation: Conversation) -> tuple[list[Event],
                                                                    list[ListMcpTools]]:
        """List each MCP server among ``tools`` not listed yet: its item joins the
        conversation (``conversation.item.added``), ``mcp_list_tools.in_progress`` names
        it, and a job is returned to list it."""
        events: list[Event] = []
        jobs: list[ListMcpTools] = []
        for server in mcp_servers(tools):
            if server.key in self._listings:
                continue
            item_id = new_item_id()
            self._listings[server.key] = McpListing(server, item_id)
            previous = conversation.last_id()
            item = Item(list_tools_item(item_id, server.label))
            conversation.insert(item)
            events += [server_event("conversation.item.added", previous_item_id=previous,
                                    item=item.public()),
                       server_event("mcp_list_tools.in_progress", item_id=item_id)]
            jobs.append(ListMcpTools(item_id, server))
        return events, jobs

    def pending(self, tools: Any) -> bool:
        """Whether any MCP server among ``tools`` is still being listed."""
        return any(self._status(server) == "in_progress" for server in mcp_servers(tools))

    def listed(self, tools: Any) -> dict[str, list[dict[str, Any]]]:
        """Label → listed tools, for the MCP servers among ``tools`` listed so far."""
        found: dict[str, list[dict[str, Any]]] = {}
        for server in mcp_servers(tools):
            listing = self._listings.get(server.key)
            if listing is not None and listing.status == "completed":
                found[server.label] = listing.tools
        return found

    def done(self, job: ListMcpTools, tools: list[dict[str, Any]],
             conversation: Conversation) -> list[Event]:
        """The server answered: its item, with the tools ``allowed_tools`` lets through
        (``conversation.item.done``), then ``mcp_list_tools.completed``."""
        listing = self._listing(job)
        if listing is None:
            return []
        tools = [tool for tool in tools if is_allowed(job.server, tool)]
        listing.status, listing.tools = "completed", tools
        events: list[Event] = []
        item = conversation.get(job.item_id)
        if item is not None:
            item.data["tools"] = list(tools)
            events.append(server_event("conversation.item.done",
                                       previous_item_id=conversation.previous_id(item.id),
                                       item=item.public()))
        return events + [server_event("mcp_list_tools.completed", item_id=job.item_id)]

    def failed(self, job: ListMcpTools, error: dict[str, Any]) -> list[Event]:
        """The server could not be listed: ``mcp_list_tools.failed`` and an ``error``
        that says which server and why (its tools stay out of every response)."""
        listing = self._listing(job)
        if listing is None:
            return []
        listing.status = "failed"
        reason = (f"Http status code: {error.get('message')}"
                  if error.get("type") == "http_error" else str(error.get("message")))
        problem = InvalidRequest(
            f"Error retrieving tool list from MCP server: '{job.server.label}'. {reason}",
            code="mcp_list_tools_failed")
        return [server_event("mcp_list_tools.failed", item_id=job.item_id),
                error_event(problem)]

    def _status(self, server: McpServer) -> str | None:
        listing = self._listings.get(server.key)
        return listing.status if listing is not None else None

    def _listing(self, job: ListMcpTools) -> McpListing | None:
        listing = self._listings.get(job.server.key)
        return listing if listing is not None and listing.item_id == job.item_id else None


def check_approval(item: Item, conversation: Conversation) -> None:
    """Raise :class:`InvalidRequest` unless an ``mcp_approval_response`` answers an
    ``mcp_approval_request`` of the conversation, with a boolean ``approve``."""
    if item.data.get("type") != "mcp_approval_response":
        return
    request = conversation.get(item.data.get("approval_request_id"))
    if request is None or request.data.get("type") != "mcp_approval_request":
        raise InvalidRequest(
            f"Approval request '{item.data.get('approval_request_id')}' not found in "
            "conversation.", code="invalid_value", param="item.approval_request_id")
    if not isinstance(item.data.get("approve"), bool):
        raise InvalidRequest("Missing required parameter: 'item.approve'.",
                             code="missing_required_parameter", param="item.approve")
