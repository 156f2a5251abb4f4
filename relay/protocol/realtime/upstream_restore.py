"""What a new upstream session needs to carry a call on: its configuration and its
conversation, as the Realtime API lets a client create them.

An upstream WebSocket may close under a live call (the network, a restart, the hosted
service's 60-minute limit). The relay then opens a new session and restores the old one
from what it saw go by: :class:`ConversationMirror` follows the upstream's server events
and keeps the conversation's items in order; :func:`restore_events` turns the last
effective session and those items into the client events that rebuild them.

The API creates items from their *content*, not their audio, so a restored item is the
closest thing a client may create (the rule the README states):

- a user message keeps its ``input_text`` (and images); its ``input_audio`` becomes
  ``input_text`` with the audio's transcript, and is lost when it had none;
- an assistant message's ``output_audio`` becomes ``output_text`` with its transcript;
- system messages, ``function_call`` and ``function_call_output`` items are kept as they were;
- anything else (MCP items, …) is not restored.

Items keep their ids, so later events that name them (``previous_item_id``,
``item_reference``, a truncation, a tool output's ``call_id``) still work. An item still
being generated when the session closed is not in the mirror: its response is lost.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import Event

# Which closes are worth a new session is every family's rule (re-exported for this one).
from ..upstream_loss import REOPEN_CLOSE_CODES as REOPEN_CLOSE_CODES
from ..upstream_loss import worth_reopening as worth_reopening

#: The session fields a ``session.update`` may set (the rest are the server's: id, model…).
WRITABLE_SESSION_FIELDS = ("type", "output_modalities", "instructions", "audio", "tools",
                           "tool_choice", "max_output_tokens", "truncation", "tracing",
                           "prompt", "include")
#: Most items a call's mirror keeps (the oldest go first): the hosted service truncates
#: long conversations itself, and a restore of thousands of items would take long.
MAX_ITEMS = 500
#: Prefix of the ``event_id`` of every event the relay sends to restore a session.
RESTORE_PREFIX = "relay_restore_"


class ConversationMirror:
    """The conversation of one upstream session, as its server events tell it."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self._order: list[str] = []
        self._items: dict[str, dict[str, Any]] = {}
        self.max_items = max_items
        #: Items dropped because the mirror was full.
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._order)

    def items(self) -> list[dict[str, Any]]:
        """The items known, in conversation order (copies)."""
        return [copy.deepcopy(self._items[i]) for i in self._order if i in self._items]

    def ids(self) -> list[str]:
        """The ids of the items, in order."""
        return list(self._order)

    def observe(self, event: Mapping[str, Any]) -> None:
        """Follow one upstream server event (any type; most are ignored)."""
        kind = event.get("type")
        if kind in ("conversation.item.added", "conversation.item.created"):
            self._place(event.get("item"), event.get("previous_item_id"))
        elif kind == "conversation.item.done":
            self._place(event.get("item"), event.get("previous_item_id"), complete=True)
        elif kind == "conversation.item.deleted":
            self._remove(event.get("item_id"))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._transcribed(event)

    def _place(self, item: Any, previous: Any, *, complete: bool = False) -> None:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            return
        item_id = item["id"]
        if item_id not in self._items:
            if isinstance(previous, str) and previous in self._order:
                self._order.insert(self._order.index(previous) + 1, item_id)
            else:
                self._order.append(item_id)
            while len(self._order) > self.max_items:
                self._items.pop(self._order.pop(0), None)
                self.overflowed += 1
        known = self._items.get(item_id)
        if complete or known is None:
            merged = copy.deepcopy(dict(item))
            if known is not None:
                _keep_transcripts(known, merged)
            self._items[item_id] = merged

    def _remove(self, item_id: Any) -> None:
        if isinstance(item_id, str) and item_id in self._items:
            del self._items[item_id]
            self._order.remove(item_id)

    def _transcribed(self, event: Mapping[str, Any]) -> None:
        item = self._items.get(event.get("item_id"))  # type: ignore[arg-type]
        index = event.get("content_index", 0)
        transcript = event.get("transcript")
        parts = item.get("content") if item is not None else None
        if (isinstance(parts, list) and isinstance(index, int) and 0 <= index < len(parts)
                and isinstance(parts[index], dict) and isinstance(transcript, str)):
            parts[index]["transcript"] = transcript


def _keep_transcripts(old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """A later copy of an item (``done`` after ``added``) keeps transcripts the earlier
    one learned and it lacks."""
    old_parts, new_parts = old.get("content"), new.get("content")
    if not isinstance(old_parts, list) or not isinstance(new_parts, list):
        return
    for before, after in zip(old_parts, new_parts, strict=False):
        if (isinstance(before, dict) and isinstance(after, dict)
                and after.get("transcript") is None and before.get("transcript")):
            after["transcript"] = before["transcript"]


def restorable_item(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item a client may create in place of ``item`` (None: it cannot be restored)."""
    kind = item.get("type")
    item_id = item.get("id")
    if kind == "function_call":
        return {"id": item_id, "type": kind, "call_id": item.get("call_id"),
                "name": item.get("name"), "arguments": item.get("arguments") or ""}
    if kind == "function_call_output":
        return {"id": item_id, "type": kind, "call_id": item.get("call_id"),
                "output": item.get("output") or ""}
    if kind != "message" or item.get("role") not in ("user", "assistant", "system"):
        return None
    parts = [p for p in map(_restorable_part, item.get("content") or []) if p is not None]
    if not parts:
        return None
    return {"id": item_id, "type": "message", "role": item["role"], "content": parts}


def _restorable_part(part: Any) -> dict[str, Any] | None:
    if not isinstance(part, Mapping):
        return None
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        return {"type": kind, "text": text} if isinstance(text, str) else None
    if kind == "input_image":
        return {k: v for k, v in part.items() if k in ("type", "image_url", "detail")}
    transcript = part.get("transcript")
    if not isinstance(transcript, str) or not transcript:
        return None
    if kind == "input_audio":
        return {"type": "input_text", "text": transcript}
    if kind in ("output_audio", "audio"):
        return {"type": "output_text", "text": transcript}
    return None


def restorable_session(session: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an effective session that a ``session.update`` may set."""
    restored = {k: copy.deepcopy(v) for k, v in session.items() if k in WRITABLE_SESSION_FIELDS}
    restored["type"] = "realtime"
    return restored


@dataclass
class RestorePlan:
    """The events that rebuild a session, and what could not be rebuilt."""

    #: One ``conversation.item.create`` per item restored.
    events: list[Event]
    #: The ids of the items the ``conversation.item.create`` events restore, in order.
    item_ids: list[str] = field(default_factory=list)
    #: The ids of the items that could not be restored (audio without a transcript, …).
    lost_item_ids: list[str] = field(default_factory=list)


def restore_items(mirror: ConversationMirror, number: int) -> RestorePlan:
    """The ``conversation.item.create`` events that rebuild ``mirror``'s conversation on a
    new upstream session, in order (``number`` makes their event ids unique to this
    restore). The ``session.update`` (:func:`restorable_session`) goes before them."""
    prefix = f"{RESTORE_PREFIX}{number}_"
    events: list[Event] = []
    plan = RestorePlan(events)
    previous: str | None = None
    for index, item in enumerate(mirror.items()):
        created = restorable_item(item)
        if created is None:
            plan.lost_item_ids.append(str(item.get("id")))
            continue
        event: Event = {"type": "conversation.item.create", "event_id": f"{prefix}{index}",
                        "item": created}
        if previous is not None:
            event["previous_item_id"] = previous
        events.append(event)
        plan.item_ids.append(created["id"])
        previous = created["id"]
    return plan
