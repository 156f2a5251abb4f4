"""Function calling in the local server: whether a response calls a tool, which one, with
what arguments, and what it says once the client has sent the tool's output.

The rules are deterministic, so an agent with function tools (an Agents SDK
``RealtimeAgent``, say) runs offline against this server the same way every time:

* Tools are the function tools and the tools of each ``mcp`` entry's server, as listed
  (:mod:`.mcp_tools`) and let through by its ``allowed_tools``, in the order of the
  ``tools`` list. ``tools`` and ``tool_choice`` come from ``response.create``
  (``response.tools``, ``response.tool_choice``) when it sets them, else from the session.
* ``tool_choice`` ``{"type": "function", "name": N}`` calls N, which must be one of the
  function tools (else the ``session.update`` or ``response.create`` is refused);
  ``{"type": "mcp", "server_label": L, "name"?: N}`` calls N (or L's first tool);
  ``"required"`` calls the first tool; ``"none"`` calls nothing. A forced function holds
  even right after a tool's output, as the hosted model's does: reset the choice to stop a
  loop. A forced MCP tool is not called (or asked for) again once an MCP call, or a
  refusal, answered the user's latest message (this server runs it, so nothing else would
  stop the loop).
* ``"auto"`` calls the first function tool whose name the user's latest message mentions
  (:func:`mentions`): the whole name, in any case (``get_weather`` in "please get_weather
  for Paris"), or every word of it but verbs like ``get`` or ``lookup`` that do not say
  which tool (``get_weather``'s word is "weather": "what is the weather in Paris"
  mentions it), unless tool output has arrived since that message.
* An MCP tool that needs approval is not called: the response asks
  (:class:`McpApproval`). Once the user's ``mcp_approval_response`` approves it, the next
  response calls it; a refusal is reported ("I did not use NAME: ...").
* The user's latest message is the last user ``message`` among the response's input (the
  conversation, or ``response.input``); what it says is the text of its ``input_text``
  parts and the transcripts of its ``input_audio`` parts (:func:`user_text`), so a tool
  can be called by voice. Words must be heard as written: a recognizer that hears
  "whether" for "weather" calls nothing.
* A call's arguments are :func:`~.schema.example_arguments` of the tool's ``parameters``:
  compact JSON that validates against them.
* A response that calls nothing, when ``function_call_output`` items, finished
  ``mcp_call`` items or refused approvals follow the user's latest message, says what
  each tool gave: an output ``Sunny, 21 C`` of ``get_weather`` gives "I used get_weather:
  Sunny, 21 C" (:func:`report`), a failed MCP call "I could not use NAME: ERROR", spoken
  (by the assistant; the parrot reads it over a tone) or as text. Otherwise it answers as
  it would without tools.
* A ``function_call_output`` must answer a ``function_call`` already in the conversation
  (same ``call_id``); like the hosted service, this one refuses any other with the code
  ``invalid_tool_call_id`` (:func:`check_output`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from .conversation import Item
from .mcp_tools import McpServer, check_mcp_tool, is_allowed, mcp_servers, needs_approval
from .schema import example_arguments

TOOL_CHOICE_MODES = ("auto", "none", "required")

#: Characters that may sit in a tool name; a mention must not run into more of them.
_NAME_CHARS = r"[A-Za-z0-9_-]"
#: Verbs that open many tool names and say nothing about which tool is meant: spoken on
#: their own they call nothing, and a name's other words are enough to call it.
_LEADING_VERBS = frozenset({"get", "fetch", "find", "look", "lookup", "up", "check", "show",
                            "retrieve", "query"})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A response that calls ``name`` with ``arguments`` (a JSON object, as text)."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolReport:
    """A response that tells the user what the tools it called gave back."""

    transcript: str


@dataclass(frozen=True, slots=True)
class McpToolCall:
    """A response that calls ``name`` on an MCP server (``arguments``: a JSON object, as
    text); ``approval_request_id`` names the approval it follows, if any."""

    server: McpServer
    name: str
    arguments: str
    approval_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class McpApproval:
    """A response that asks the user to approve calling ``name`` on an MCP server."""

    server: McpServer
    name: str
    arguments: str


Step = ToolCall | McpToolCall | McpApproval | ToolReport | None


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A tool a response may call: a function tool, or one of an MCP server's tools."""

    name: str
    schema: Any
    server: McpServer | None = None
    listed: Mapping[str, Any] | None = None


def function_tools(tools: Any) -> list[Mapping[str, Any]]:
    """The function tools among a ``tools`` list, in order (other kinds are ignored)."""
    if not isinstance(tools, list):
        return []
    return [tool for tool in tools if isinstance(tool, Mapping)
            and tool.get("type") == "function" and isinstance(tool.get("name"), str)]


def check_tools(tools: Any, choice: Any, where: str,
                mcp_urls: Sequence[str] = ()) -> None:
    """Raise :class:`InvalidRequest` (``param`` under ``where``: ``session`` or
    ``response``) unless ``tools`` and ``tool_choice`` are usable together; ``mcp_urls``
    are the MCP server URLs (prefixes) this server may connect to."""
    if not isinstance(tools, list):
        raise InvalidRequest(f"Invalid type for '{where}.tools': expected an array.",
                             code="invalid_type", param=f"{where}.tools")
    for index, tool in enumerate(tools):
        param = f"{where}.tools[{index}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequest(f"Invalid type for '{param}': expected an object.",
                                 code="invalid_type", param=param)
        if tool.get("type") == "mcp":
            check_mcp_tool(tool, param, mcp_urls)
            continue
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"Invalid value: {str(tool.get('type'))[:40]!r}. Supported values are: "
                "'function' and 'mcp'.", code="invalid_value", param=f"{param}.type")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"Missing required parameter: '{param}.name'.",
                                 code="missing_required_parameter", param=f"{param}.name")
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], Mapping):
            raise InvalidRequest(f"Invalid type for '{param}.parameters': expected an object.",
                                 code="invalid_type", param=f"{param}.parameters")
    labels = [server.label for server in mcp_servers(tools)]
    if len(set(labels)) < len(labels):
        raise InvalidRequest("Each MCP tool needs its own server_label.",
                             code="invalid_value", param=f"{where}.tools")
    _check_choice(choice, function_tools(tools), labels, f"{where}.tool_choice")


def _check_choice(choice: Any, tools: list[Mapping[str, Any]], labels: list[str],
                  param: str) -> None:
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        return
    if isinstance(choice, Mapping) and choice.get("type") == "mcp":
        if choice.get("server_label") in labels:
            return
        raise InvalidRequest(
            f"Tool choice names MCP server '{choice.get('server_label')}', which is not "
            "among the MCP tools.", code="invalid_value", param=param)
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = choice.get("name")
        if any(tool["name"] == name for tool in tools):
            return
        raise InvalidRequest(
            f"Tool choice names function '{name}', which is not among the function tools.",
            code="invalid_value", param=param,
        )
    raise InvalidRequest(
        f"Invalid value for '{param}': expected 'auto', 'none', 'required' or "
        "{'type': 'function', 'name': ...}.", code="invalid_value", param=param,
    )


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` names the tool ``name``: the whole name, in any case, not as part
    of a longer name (``get_weather`` is in "Get_Weather, please" but not in
    "forget_weather" or "get_weather2"); or each of the name's words (:func:`name_words`)
    as a whole word ("the weather in Paris" names ``get_weather``)."""
    if not name:
        return False
    pattern = rf"(?<!{_NAME_CHARS}){re.escape(name)}(?!{_NAME_CHARS})"
    if re.search(pattern, text, re.IGNORECASE) is not None:
        return True
    wanted = name_words(name)
    # Words of the text as a name's characters run: "forget_weather" is one word, and
    # says nothing of the weather.
    said = {word.lower() for word in re.findall(rf"{_NAME_CHARS}+", text)}
    return bool(wanted) and set(wanted) <= said


def name_words(name: str) -> list[str]:
    """The words that name a tool, lower case: ``get_weather`` and ``getWeather`` give
    ["weather"] (a verb like "get" says nothing on its own), ``lookup_order_status``
    ["order", "status"]; a name of verbs alone keeps them (``get`` gives ["get"])."""
    words = [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+", name)]
    meaningful = [word for word in words if word not in _LEADING_VERBS]
    return meaningful or words


def user_text(item: Item) -> str:
    """What a user message says: its ``input_text`` parts and the transcripts of its
    ``input_audio`` parts, one per line."""
    parts = item.data.get("content")
    if not isinstance(parts, list):
        return ""
    return "\n".join(_part_text(part) for part in parts if _part_text(part))


def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return ""
    key = {"input_text": "text", "input_audio": "transcript"}.get(str(part.get("type")))
    value = part.get(key) if key is not None else None
    return value if isinstance(value, str) else ""


def choose(items: Sequence[Item], tools: Any, choice: Any, call_names: Mapping[str, str],
           listed: Mapping[str, list[dict[str, Any]]] | None = None) -> Step:
    """What a response over ``items`` (its input, in order) does about tools: call one,
    ask to call one, report what they gave, or nothing (None: answer as without tools).
    ``call_names`` maps the call ids known to the conversation to the functions called;
    ``listed`` maps each MCP server label to its listed tools."""
    candidates = _candidates(tools, listed or {})
    latest, outputs = _latest_turn(items)
    approved = _approved_calls(items, latest, mcp_servers(tools))
    if approved is not None:
        return approved
    forced = _forced(candidates, choice)
    # An MCP call made or refused since the user spoke ends a forced MCP choice: this
    # server runs it, so nothing else would stop it asking or calling again.
    mcp_answered = any(item.data.get("type") in ("mcp_call", "mcp_approval_response")
                       for item in outputs)
    if forced is not None and not (forced.server is not None and mcp_answered):
        return _step(forced, items, latest)
    if outputs:
        return ToolReport(report(outputs, call_names))
    if choice == "none" or latest is None:
        return None
    text = user_text(latest)
    for candidate in candidates:
        if mentions(text, candidate.name):
            return _step(candidate, items, latest)
    return None


def _candidates(tools: Any, listed: Mapping[str, list[dict[str, Any]]]) -> list[_Candidate]:
    """The tools a response may call, in the order of the ``tools`` list."""
    servers = {server.label: server for server in mcp_servers(tools)}
    found: list[_Candidate] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, Mapping):
            continue
        if tool.get("type") == "function" and isinstance(tool.get("name"), str):
            found.append(_Candidate(tool["name"], tool.get("parameters")))
        elif tool.get("type") == "mcp" and tool.get("server_label") in servers:
            server = servers[tool["server_label"]]
            found += [_Candidate(str(entry["name"]), entry.get("input_schema"), server, entry)
                      for entry in listed.get(server.label, []) if is_allowed(server, entry)]
    return found


def _forced(candidates: list[_Candidate], choice: Any) -> _Candidate | None:
    """The tool a ``tool_choice`` makes the response call whatever was said, if any."""
    if choice == "required":
        return candidates[0] if candidates else None
    if not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "function":
        return next((c for c in candidates
                     if c.server is None and c.name == choice.get("name")), None)
    if choice.get("type") == "mcp":
        return next((c for c in candidates if c.server is not None
                     and c.server.label == choice.get("server_label")
                     and choice.get("name") in (None, c.name)), None)
    return None


def _step(candidate: _Candidate, items: Sequence[Item], latest: Item | None) -> Step:
    """Call ``candidate``: a function call, an MCP call, or a request to approve one (or
    nothing, when one is already waiting for the user's answer)."""
    arguments = json.dumps(example_arguments(candidate.schema), separators=(",", ":"),
                           ensure_ascii=False)
    server = candidate.server
    if server is None:
        return ToolCall(candidate.name, arguments)
    if candidate.listed is not None and not needs_approval(server, candidate.listed):
        return McpToolCall(server, candidate.name, arguments)
    if _awaiting_approval(items, latest):
        return None
    return McpApproval(server, candidate.name, arguments)


def _since(items: Sequence[Item], latest: Item | None) -> list[Item]:
    """The items after the user's latest message (all of them when there is none)."""
    if latest is None:
        return list(items)
    index = next((i for i, item in enumerate(items) if item is latest), -1)
    return list(items[index + 1:])


def _approved_calls(items: Sequence[Item], latest: Item | None,
                    servers: list[McpServer]) -> McpToolCall | None:
    """An approved request since the user's latest message not yet called (on a server
    still among the tools), if any."""
    by_label = {server.label: server for server in servers}
    recent = _since(items, latest)
    requests = {item.id: item for item in items
                if item.data.get("type") == "mcp_approval_request"}
    called = {item.data.get("approval_request_id") for item in items
              if item.data.get("type") == "mcp_call"}
    for item in recent:
        data = item.data
        if data.get("type") != "mcp_approval_response" or data.get("approve") is not True:
            continue
        request = requests.get(str(data.get("approval_request_id")))
        server = by_label.get(str(request.data.get("server_label"))) if request else None
        if request is None or server is None or request.id in called:
            continue
        return McpToolCall(server, str(request.data.get("name")),
                           str(request.data.get("arguments") or "{}"), request.id)
    return None


def _awaiting_approval(items: Sequence[Item], latest: Item | None) -> bool:
    """Whether an approval request since the user's latest message has no answer yet."""
    recent = _since(items, latest)
    answered = {item.data.get("approval_request_id") for item in recent
                if item.data.get("type") == "mcp_approval_response"}
    return any(item.data.get("type") == "mcp_approval_request" and item.id not in answered
               for item in recent)


def latest_user_message(items: Iterable[Item]) -> Item | None:
    """The user's latest message among ``items`` (in order), if any."""
    return _latest_turn(items)[0]


def _latest_turn(items: Iterable[Item]) -> tuple[Item | None, list[Item]]:
    """The user's latest message, and the tool outputs that came after it."""
    latest: Item | None = None
    outputs: list[Item] = []
    for item in items:
        kind = item.data.get("type")
        if kind == "message" and item.role == "user":
            latest, outputs = item, []
        elif kind in ("function_call_output", "mcp_call"):
            outputs.append(item)
        elif kind == "mcp_approval_response" and item.data.get("approve") is False:
            outputs.append(item)
    return latest, outputs


def report(outputs: Iterable[Item], call_names: Mapping[str, str]) -> str:
    """The answer after tool output: "I used NAME: OUTPUT." for each output, in order."""
    sentences = []
    for item in outputs:
        kind = item.data.get("type")
        if kind == "mcp_approval_response":
            why = str(item.data.get("reason") or "").strip()
            sentences.append(f"I did not use the tool: you declined{': ' + why if why else ''}.")
            continue
        if kind == "mcp_call":
            name = str(item.data.get("name"))
            error = item.data.get("error")
            if isinstance(error, Mapping):
                sentences.append(f"I could not use {name}: {error.get('message', '')}".strip())
                continue
        else:
            name = call_names.get(str(item.data.get("call_id")), "a tool")
        output = str(item.data.get("output") or "").strip()
        sentences.append(f"I used {name}: {output}" if output else f"I used {name}.")
    return " ".join(sentences)


def call_names(items: Iterable[Item]) -> dict[str, str]:
    """``call_id`` → function name for the ``function_call`` items among ``items``."""
    return {str(item.data["call_id"]): str(item.data.get("name"))
            for item in items if item.data.get("type") == "function_call"
            and isinstance(item.data.get("call_id"), str)}


def check_output(item: Item, known: Iterable[Item]) -> None:
    """Raise the hosted service's error unless ``item``, when it is a
    ``function_call_output``, answers a ``function_call`` among ``known``."""
    if item.data.get("type") != "function_call_output":
        return
    call_id = item.data.get("call_id")
    if str(call_id) not in call_names(known):
        # The hosted service's words and code; it names no param.
        raise InvalidRequest(f"Tool call ID '{call_id}' not found in conversation.",
                             code="invalid_tool_call_id")
