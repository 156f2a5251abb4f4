"""The local server's context window and ``truncation``: which conversation items a
response sees, and the input tokens it reports (sans-I/O).

The server's model has the context window of the hosted ``gpt-realtime`` models,
:data:`CONTEXT_WINDOW_TOKENS`; a response keeps room for its ``max_output_tokens``
(4096 for ``inf``) and the instructions and tools come first. Tokens are estimated as the
rest of the server estimates them: a token per four characters of text, per 100 ms of
user audio, per 50 ms of assistant audio. Then, as the hosted API documents:

- ``"auto"``: the oldest items are dropped from what the response sees until the rest fits;
- ``{"type": "retention_ratio", "retention_ratio": r, "token_limits": {"post_instructions":
  P}}``: once the conversation exceeds P tokens (the window when P is not given), the
  oldest items are dropped until it holds at most r × P, so later turns need no new cut;
- ``"disabled"``: nothing is dropped; a conversation that does not fit fails the response
  (``status: "failed"``, error code ``context_length_exceeded``).

Dropping is what the model sees, not the conversation: no item is deleted, no event sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conversation import Item
from .field_checks import MAX_OUTPUT_TOKENS
from .response import CHARS_PER_TOKEN, INPUT_MS_PER_TOKEN, OUTPUT_MS_PER_TOKEN, token_budget

#: The context window of the hosted gpt-realtime models.
CONTEXT_WINDOW_TOKENS = 32_768


@dataclass(frozen=True, slots=True)
class Context:
    """What a response sees: ``items`` (oldest first), their text and audio tokens, and
    whether they overflow a window that may not be truncated."""

    items: list[Item]
    text_tokens: int
    audio_tokens: int
    overflow: bool = False


def fit_context(items: Sequence[Item], session: Mapping[str, Any],
                max_output_tokens: Any) -> Context:
    """The items of ``items`` a response sees under the session's ``truncation``."""
    costs = [item_tokens(item) for item in items]
    budget = token_budget(max_output_tokens)
    reserved = budget if budget is not None else MAX_OUTPUT_TOKENS
    window = CONTEXT_WINDOW_TOKENS - reserved - _preamble_tokens(session)
    total = sum(text + audio for text, audio in costs)
    rule = session.get("truncation", "auto")
    if rule == "disabled":
        return _context(items, costs, 0, overflow=total > window)
    if isinstance(rule, Mapping):  # retention_ratio
        limits = rule.get("token_limits")
        post = limits.get("post_instructions") if isinstance(limits, Mapping) else None
        limit = min(post, window) if isinstance(post, int) else window
        target = math.floor(float(rule["retention_ratio"]) * limit) if total > limit else total
    else:
        target = window
    start = 0
    while start < len(items) and total > target:
        total -= sum(costs[start])
        start += 1
    return _context(items, costs, start)


def item_tokens(item: Item) -> tuple[int, int]:
    """An item's (text tokens, audio tokens), estimated."""
    data = item.data
    text = 0
    for part in data.get("content") or []:
        if isinstance(part, Mapping):
            for key in ("text", "transcript"):
                if isinstance(part.get(key), str):
                    text += len(part[key])
    for key in ("arguments", "output", "name"):
        if isinstance(data.get(key), str):
            text += len(data[key])
    if isinstance(data.get("tools"), list):  # an MCP server's tool list
        text += len(json.dumps(data["tools"]))
    audio = -(-len(item.audio) // (INPUT_MS_PER_TOKEN * 48))
    audio += -(-item.output_bytes // (OUTPUT_MS_PER_TOKEN * 48))
    return -(-text // CHARS_PER_TOKEN), audio


def _preamble_tokens(session: Mapping[str, Any]) -> int:
    """The instructions and tool definitions, which every response sees first."""
    chars = len(str(session.get("instructions") or ""))
    chars += len(json.dumps(session.get("tools") or []))
    return -(-chars // CHARS_PER_TOKEN)


def _context(items: Sequence[Item], costs: list[tuple[int, int]], start: int, *,
             overflow: bool = False) -> Context:
    kept = costs[start:]
    return Context(list(items[start:]), sum(t for t, _ in kept), sum(a for _, a in kept),
                   overflow)
