"""Responses of the local server that hold an MCP item instead of a message: one that
calls a tool (its ``mcp_call`` item, closed once the driver brings the tool's answer) and
one that asks the user to approve a call (its ``mcp_approval_request`` item)."""

from __future__ import annotations

from typing import Any

from ...protocol.events import Event
from .conversation import Item, new_item_id
from .mcp_tools import McpOutcome, McpServer, approval_request_item, mcp_call_item
from .response import (
    CHARS_PER_TOKEN,
    BaseResponse,
    ResponseChunk,
    ResponseOptions,
    server_event,
    text_pieces,
    text_usage,
    token_budget,
)


class McpCallResponse(BaseResponse):
    """A response that calls a tool on an MCP server: its ``mcp_call`` item opens with
    the arguments and ``response.mcp_call.in_progress``; the session hands the tool's
    :class:`McpOutcome` to :meth:`finish_call`, which closes the item and the response.

    ``cut`` is set when ``max_output_tokens`` cannot hold the arguments: the call is not
    made and the response ends ``incomplete`` with what fitted.
    """

    def __init__(self, server: McpServer, name: str, arguments: str,
                 options: ResponseOptions, *, approval_request_id: str | None = None,
                 response_id: str | None = None) -> None:
        super().__init__(Item(mcp_call_item(new_item_id(), server, name, approval_request_id)),
                         options, response_id)
        self.server = server
        budget = token_budget(options.max_output_tokens)
        self.cut = budget is not None and -(-len(arguments) // CHARS_PER_TOKEN) > budget
        self.arguments = arguments[:budget * CHARS_PER_TOKEN] if self.cut and budget \
            else arguments
        self._outcome: McpOutcome | None = None

    @property
    def name(self) -> str:
        """The tool called."""
        return str(self.item.data["name"])

    def start(self, previous_item_id: str | None, *, announced: bool = False) -> list[Event]:
        """``response.created`` through ``response.mcp_call.in_progress``: the item, its
        arguments streamed and done (the call then runs)."""
        events = self._opening(previous_item_id, announced)
        where = self._where()
        events += [server_event("response.mcp_call_arguments.delta", **where, delta=piece)
                   for piece in text_pieces(self.arguments)]
        events.append(server_event("response.mcp_call_arguments.done", **where,
                                   arguments=self.arguments))
        self.item.data["arguments"] = self.arguments
        if not self.cut:
            events.append(server_event("response.mcp_call.in_progress", **self._placed()))
        return events

    def has_more(self) -> bool:
        """Never: nothing is paced; the call's answer closes the response."""
        return False

    def next_chunk(self, previous_item_id: str | None) -> ResponseChunk:
        """Not used (:meth:`has_more` is False)."""
        raise RuntimeError("an MCP call response has no chunks")

    def finish_call(self, outcome: McpOutcome, previous_item_id: str | None) -> list[Event]:
        """The tool answered: ``response.mcp_call.completed`` (or ``.failed``), then the
        item and the response, completed."""
        self._outcome = outcome
        return self.finish("completed", None, previous_item_id)

    def finish(self, status: str, reason: str | None,
               previous_item_id: str | None) -> list[Event]:
        """Close the item and the response: with the call's outcome when it came, else
        as ``status`` says (cancelled while the tool ran: its answer is dropped)."""
        events: list[Event] = []
        outcome = self._outcome
        if outcome is not None:
            self.item.data["output"] = outcome.output
            self.item.data["error"] = outcome.error
            kind = "failed" if outcome.error is not None else "completed"
            events.append(server_event(f"response.mcp_call.{kind}", **self._placed()))
        self.item.data["status"] = "completed" if status == "completed" else "incomplete"
        usage = text_usage(-(-len(self.arguments) // CHARS_PER_TOKEN))
        return events + self._closing(status, reason, previous_item_id, usage)

    def _placed(self) -> dict[str, Any]:
        return {"item_id": self.item.id, "output_index": 0}

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, **self._placed()}


class ApprovalResponse(BaseResponse):
    """A response that asks the user to approve an MCP call: one
    ``mcp_approval_request`` item, added and done at once."""

    def __init__(self, server: McpServer, name: str, arguments: str,
                 options: ResponseOptions, response_id: str | None = None) -> None:
        super().__init__(Item(approval_request_item(server, name, arguments)), options,
                         response_id)

    def start(self, previous_item_id: str | None, *, announced: bool = False) -> list[Event]:
        """``response.created`` through ``conversation.item.added``."""
        return self._opening(previous_item_id, announced)

    def has_more(self) -> bool:
        """Whether the closing events are still to be sent."""
        return not self.finished

    def next_chunk(self, previous_item_id: str | None) -> ResponseChunk:
        """The closing events: ``conversation.item.done`` (where clients look for the
        request), ``response.output_item.done``, ``response.done``."""
        return ResponseChunk(self.id, self.finish("completed", None, previous_item_id), 0,
                             True)

    def finish(self, status: str, reason: str | None,
               previous_item_id: str | None) -> list[Event]:
        """Close the item and the response."""
        tokens = -(-len(str(self.item.data["arguments"])) // CHARS_PER_TOKEN)
        return self._closing(status, reason, previous_item_id, text_usage(tokens))
