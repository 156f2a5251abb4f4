"""MCP tools in the local server, without I/O: what a session's ``mcp`` tool entries say,
which of a server's listed tools a response may call, which need the user's approval, and
the items and jobs that carry the work to the driver.

The hosted flow this follows (and what openai-agents-js expects of it):

1. A session (or ``response.create``) names an ``mcp`` tool: an ``mcp_list_tools`` item is
   added to the conversation (``conversation.item.added``, no tools yet),
   ``mcp_list_tools.in_progress`` names it, and a :class:`ListMcpTools` job asks the
   server. Once it answers, ``conversation.item.done`` carries the item with its tools and
   ``mcp_list_tools.completed`` follows (or ``mcp_list_tools.failed`` and an ``error``).
   Each server is listed once per session (per label, URL and headers).
2. A response that calls one of its tools (the rules of :mod:`.tools`) holds one
   ``mcp_call`` item: ``response.output_item.added``, ``conversation.item.added``,
   ``response.mcp_call_arguments.delta``/``.done``, ``response.mcp_call.in_progress``;
   a :class:`CallMcpTool` job calls it, then ``response.mcp_call.completed`` (``output``
   set) or ``.failed`` (``error`` set: ``http_error``, ``protocol_error`` or
   ``tool_execution_error``), ``conversation.item.done``, ``response.output_item.done``,
   ``response.done``. A response of its own follows at once and says what came out.
3. A tool that needs approval (``require_approval``: ``"always"``, the hosted default, or
   a filter naming it) is not called: the response holds an ``mcp_approval_request``
   item instead. The client answers with ``conversation.item.create`` of an
   ``mcp_approval_response`` (no ``response.create`` needed, as agents-js sends it); an
   approval starts a response that calls the tool (its ``mcp_call`` names the
   ``approval_request_id``), a refusal one that says the tool was not used.

Only ``server_url`` servers are reached: ``connector_id`` and ``tunnel_id`` need the
hosted service and are refused. The operator lists the URLs the server may connect to
(``RELAY_LOCAL_MCP_URLS``); any other is refused when the session names it, so a client
cannot make the relay's host fetch what it likes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ...errors import InvalidRequest
from ...protocol.events import random_id
from ...protocol.json_input import load_json

#: The fields of an ``mcp`` tool entry (openai's ``RealtimeToolsConfigUnion``'s ``Mcp``).
MCP_TOOL_KEYS = frozenset({
    "type", "server_label", "server_url", "connector_id", "tunnel_id", "authorization",
    "headers", "allowed_tools", "require_approval", "server_description", "allowed_callers",
    "defer_loading",
})
_FILTER_KEYS = frozenset({"tool_names", "read_only"})


@dataclass(frozen=True, slots=True)
class McpServer:
    """One ``mcp`` tool entry: where its server is and what may be called on it.
    ``headers`` include the ``authorization`` token as a bearer; they are never shown."""

    label: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    allowed_tools: Any = None
    require_approval: Any = None

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What makes two entries the same server: listed once per session."""
        return (self.label, self.url, self.headers)

    def __repr__(self) -> str:  # headers carry secrets: never in a log line or a trace
        return f"McpServer(label={self.label!r})"


@dataclass(frozen=True, slots=True)
class ListMcpTools:
    """Ask ``server`` for its tools; the answer goes to the listing item ``item_id``."""

    item_id: str
    server: McpServer


@dataclass(frozen=True, slots=True)
class CallMcpTool:
    """Call ``name`` with ``arguments`` on ``server`` for the ``mcp_call`` item ``item_id``
    of response ``response_id``."""

    response_id: str
    item_id: str
    server: McpServer
    name: str
    arguments: dict[str, Any]


McpJob = ListMcpTools | CallMcpTool


@dataclass(frozen=True, slots=True)
class McpOutcome:
    """What a tool call gave: its ``output`` text, or the ``error`` (openai's
    ``RealtimeMcpToolCall.error`` shapes: ``http_error``/``protocol_error`` with a
    ``code``, ``tool_execution_error``), and a message for the spoken report."""

    output: str | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class McpListing:
    """A server's tools as listed for this session: ``in_progress``, ``completed`` or
    ``failed``, and the ``mcp_list_tools`` item that shows them."""

    server: McpServer
    item_id: str
    status: str = "in_progress"
    tools: list[dict[str, Any]] = field(default_factory=list)


def check_mcp_tool(tool: Mapping[str, Any], param: str, allowed_urls: Sequence[str]) -> None:
    """Raise :class:`InvalidRequest` naming the parameter unless ``tool`` is an ``mcp``
    entry this server can use."""
    for key in tool:
        if key not in MCP_TOOL_KEYS:
            raise InvalidRequest(f"Unknown parameter: '{param}.{key}'.",
                                 code="unknown_parameter", param=f"{param}.{key}")
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise InvalidRequest(f"Missing required parameter: '{param}.server_label'.",
                             code="missing_required_parameter", param=f"{param}.server_label")
    for key in ("connector_id", "tunnel_id"):
        if tool.get(key) is not None:
            raise InvalidRequest(
                f"'{key}' needs the hosted service; this server reaches MCP servers by "
                "server_url only.", code="unsupported_parameter", param=f"{param}.{key}")
    url = tool.get("server_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"Missing required parameter: '{param}.server_url'.",
                             code="missing_required_parameter", param=f"{param}.server_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"Invalid '{param}.server_url': expected an http(s) URL.",
                             code="invalid_value", param=f"{param}.server_url")
    if not url_allowed(url, allowed_urls):
        raise InvalidRequest(
            f"MCP server '{label}' is not one this server may connect to; its operator "
            "lists those in RELAY_LOCAL_MCP_URLS.", code="mcp_server_not_allowed",
            param=f"{param}.server_url")
    headers = tool.get("headers")
    if headers is not None and not (isinstance(headers, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise InvalidRequest(f"Invalid type for '{param}.headers': expected an object of "
                             "strings.", code="invalid_type", param=f"{param}.headers")
    if tool.get("authorization") is not None and not isinstance(tool["authorization"], str):
        raise InvalidRequest(f"Invalid type for '{param}.authorization': expected a string.",
                             code="invalid_type", param=f"{param}.authorization")
    _check_filter(tool.get("allowed_tools"), f"{param}.allowed_tools", names_allowed=True)
    approval = tool.get("require_approval")
    if approval is None or approval in ("always", "never"):
        return
    if not isinstance(approval, Mapping):
        raise InvalidRequest(
            f"Invalid value for '{param}.require_approval': expected 'always', 'never' or "
            "an object.", code="invalid_value", param=f"{param}.require_approval")
    for key, value in approval.items():
        if key not in ("always", "never"):
            raise InvalidRequest(f"Unknown parameter: '{param}.require_approval.{key}'.",
                                 code="unknown_parameter",
                                 param=f"{param}.require_approval.{key}")
        _check_filter(value, f"{param}.require_approval.{key}", names_allowed=False)


def _check_filter(value: Any, param: str, *, names_allowed: bool) -> None:
    """A tool filter: ``{"tool_names": [...], "read_only": bool}``, or (for
    ``allowed_tools``) a plain list of names, or null."""
    if value is None:
        return
    if names_allowed and isinstance(value, list):
        value = {"tool_names": value}
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.",
                             code="invalid_type", param=param)
    for key in value:
        if key not in _FILTER_KEYS:
            raise InvalidRequest(f"Unknown parameter: '{param}.{key}'.",
                                 code="unknown_parameter", param=f"{param}.{key}")
    names = value.get("tool_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(n, str) for n in names)):
        raise InvalidRequest(f"Invalid type for '{param}': expected an array of names.",
                             code="invalid_type", param=param)
    if value.get("read_only") is not None and not isinstance(value["read_only"], bool):
        raise InvalidRequest(f"Invalid type for '{param}.read_only': expected a boolean.",
                             code="invalid_type", param=f"{param}.read_only")


def url_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Whether ``url`` starts with one of the operator's prefixes (``*``: any URL)."""
    return any(prefix == "*" or url.startswith(prefix) for prefix in allowed)


def mcp_servers(tools: Any) -> list[McpServer]:
    """The ``mcp`` entries among a (checked) ``tools`` list, in order."""
    servers: list[McpServer] = []
    if not isinstance(tools, list):
        return servers
    for tool in tools:
        if not isinstance(tool, Mapping) or tool.get("type") != "mcp":
            continue
        headers = dict(tool.get("headers") or {})
        if isinstance(tool.get("authorization"), str):
            headers["Authorization"] = f"Bearer {tool['authorization']}"
        servers.append(McpServer(
            label=str(tool["server_label"]), url=str(tool["server_url"]),
            headers=tuple(sorted(headers.items())),
            allowed_tools=tool.get("allowed_tools"),
            require_approval=tool.get("require_approval", "always"),
        ))
    return servers


def _matches(rule: Any, tool: Mapping[str, Any]) -> bool:
    """Whether a tool filter matches a listed tool: by name, or by its ``readOnlyHint``
    annotation; a filter with neither matches nothing."""
    if isinstance(rule, list):
        rule = {"tool_names": rule}
    if not isinstance(rule, Mapping):
        return False
    names = rule.get("tool_names")
    if isinstance(names, list) and tool.get("name") in names:
        return True
    read_only = rule.get("read_only")
    if isinstance(read_only, bool):
        annotations = tool.get("annotations")
        hint = annotations.get("readOnlyHint") if isinstance(annotations, Mapping) else None
        return (hint is True) == read_only
    return False


def is_allowed(server: McpServer, tool: Mapping[str, Any]) -> bool:
    """Whether ``allowed_tools`` lets a response call ``tool`` (no filter: every tool)."""
    return server.allowed_tools is None or _matches(server.allowed_tools, tool)


def needs_approval(server: McpServer, tool: Mapping[str, Any]) -> bool:
    """Whether calling ``tool`` needs the user's approval first: ``"never"`` no,
    ``"always"`` yes, a filter as it says (``never`` first), and yes for what neither
    side of a filter names, as the hosted default is to ask."""
    rule = server.require_approval
    if rule == "never":
        return False
    if isinstance(rule, Mapping):
        if _matches(rule.get("never"), tool):
            return False
        if _matches(rule.get("always"), tool):
            return True
    return True


def list_tools_item(item_id: str, label: str,
                    tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An ``mcp_list_tools`` conversation item."""
    return {"id": item_id, "object": "realtime.item", "type": "mcp_list_tools",
            "server_label": label, "tools": list(tools or [])}


def mcp_call_item(item_id: str, server: McpServer, name: str,
                  approval_request_id: str | None) -> dict[str, Any]:
    """An ``mcp_call`` item about to be made: no arguments, output or error yet."""
    return {"id": item_id, "object": "realtime.item", "type": "mcp_call",
            "status": "in_progress", "server_label": server.label, "name": name,
            "arguments": "", "approval_request_id": approval_request_id,
            "output": None, "error": None}


def approval_request_item(server: McpServer, name: str, arguments: str) -> dict[str, Any]:
    """An ``mcp_approval_request`` item asking the user to let ``name`` be called."""
    return {"id": random_id("mcpr_"), "object": "realtime.item",
            "type": "mcp_approval_request", "server_label": server.label, "name": name,
            "arguments": arguments}


def listed_tool(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A tool as an ``mcp_list_tools`` item shows it: ``name``, ``input_schema``,
    ``description`` and ``annotations`` (openai's ``RealtimeMcpListTools.Tool``)."""
    schema = raw.get("inputSchema", raw.get("input_schema"))  # the MCP wire spells it so
    return {"name": str(raw.get("name")), "input_schema": schema or {},
            "description": raw.get("description"), "annotations": raw.get("annotations")}


def json_object(text: str) -> dict[str, Any]:
    """A tool call's arguments as an object (``{}`` when they are not one)."""
    try:
        value = load_json(text)  # a client's text: any depth, any escape
    except InvalidRequest:
        return {}
    return value if isinstance(value, dict) else {}


def without_credentials(session: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``session`` as events show it: each MCP tool's ``authorization`` and
    ``headers`` (credentials for its server, not for clients to read) kept back."""
    shown = copy.deepcopy(dict(session))
    for tool in shown.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            tool.pop("authorization", None)
            tool.pop("headers", None)
    return shown
