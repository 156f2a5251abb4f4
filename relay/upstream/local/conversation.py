"""The local server's conversation: an ordered list of items, with the audio behind them."""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...audio import RATE, SAMPLE_BYTES
from ...errors import InvalidRequest
from ...protocol.events import random_id

#: Bytes in one millisecond of the server's audio (24 kHz mono PCM16).
BYTES_PER_MS = RATE // 1000 * SAMPLE_BYTES

_ROLES = ("user", "assistant", "system")
_ITEM_TYPES = ("message", "function_call", "function_call_output", "mcp_approval_response")


def new_item_id() -> str:
    """A fresh item id, shaped like the hosted service's."""
    return random_id("item_")


def decode_audio(value: Any, param: str) -> bytes:
    """Base64 audio from a client event, or :class:`InvalidRequest` naming ``param``."""
    if not isinstance(value, str):
        raise InvalidRequest(
            f"Invalid type for '{param}': expected a base64-encoded string.",
            code="invalid_type", param=param,
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"Invalid '{param}'. Expected base64-encoded audio data.",
            code="invalid_value", param=param,
        ) from exc


@dataclass(slots=True)
class Item:
    """One conversation item: its public JSON (never carrying audio) and its audio.

    ``audio`` is the user's committed or created input audio; for an assistant item only
    the *amount* of audio generated so far is kept, in ``output_bytes`` (what
    :meth:`audio_ms` measures for truncation), so a long echo response holds no memory.
    """

    data: dict[str, Any]
    audio: bytes = b""
    output_bytes: int = 0

    @property
    def id(self) -> str:
        """The item's id."""
        return str(self.data["id"])

    @property
    def role(self) -> str | None:
        """``user``, ``assistant``, ``system``, or None for non-message items."""
        role = self.data.get("role")
        return role if isinstance(role, str) else None

    def audio_ms(self) -> int:
        """Milliseconds of audio (24 kHz PCM16) held for this item."""
        return (len(self.audio) + self.output_bytes) // BYTES_PER_MS

    def has_input_audio(self) -> bool:
        """Whether this is a user message carrying audio that can be parroted."""
        return self.role == "user" and bool(self.audio)

    def audio_part_index(self) -> int:
        """Index of the first ``input_audio`` content part (0 when there is none)."""
        parts = self.data.get("content")
        if isinstance(parts, list):
            for index, part in enumerate(parts):
                if isinstance(part, Mapping) and part.get("type") == "input_audio":
                    return index
        return 0

    def set_transcript(self, content_index: int, transcript: str) -> None:
        """Record what the audio part at ``content_index`` says (as the hosted service
        fills in ``transcript`` once transcription completes)."""
        parts = self.data.get("content")
        if isinstance(parts, list) and 0 <= content_index < len(parts) \
                and isinstance(parts[content_index], dict):
            parts[content_index]["transcript"] = transcript

    def public(self, *, with_audio: bool = False) -> dict[str, Any]:
        """The item as sent to clients; ``with_audio`` adds user audio back (for retrieve)."""
        data = copy.deepcopy(self.data)
        if with_audio and self.role == "user" and self.audio:
            for part in data.get("content", []):
                if part.get("type") == "input_audio":
                    part["audio"] = base64.b64encode(self.audio).decode("ascii")
                    break
        return data


def user_audio_item(item_id: str, audio: bytes) -> Item:
    """The user message committed from the input audio buffer."""
    return Item(
        {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        },
        audio,
    )


def assistant_item(item_id: str) -> Item:
    """An assistant message about to be generated: in progress, no content yet."""
    return Item(
        {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
    )


def function_call_item(item_id: str, name: str, call_id: str) -> Item:
    """A function call about to be generated: in progress, no arguments yet."""
    return Item(
        {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
    )


def item_from_client(raw: Any) -> Item:
    """The item of a ``conversation.item.create``, checked, with any input audio decoded."""
    if not isinstance(raw, Mapping):
        raise InvalidRequest("Missing required parameter: 'item'.",
                             code="missing_required_parameter", param="item")
    kind = raw.get("type", "message")
    if kind not in _ITEM_TYPES:
        raise InvalidRequest(
            f"Invalid value: '{kind}'. Supported values are: "
            + ", ".join(f"'{t}'" for t in _ITEM_TYPES) + ".",
            code="invalid_value", param="item.type",
        )
    data = copy.deepcopy(dict(raw))
    data["type"] = kind
    data["object"] = "realtime.item"
    data.setdefault("status", "completed")
    item_id = data.get("id")
    if not isinstance(item_id, str) or not item_id:
        data["id"] = new_item_id()
    if kind == "message":
        return _message_from_client(data)
    if kind == "mcp_approval_response":
        _require_str(data, "approval_request_id")
    elif kind == "function_call_output":
        _require_str(data, "call_id")
        _require_str(data, "output")
    else:
        _require_str(data, "call_id")
        _require_str(data, "name")
        data.setdefault("arguments", "")
    return Item(data)


def _message_from_client(data: dict[str, Any]) -> Item:
    if data.get("role") not in _ROLES:
        raise InvalidRequest(
            "Invalid value for 'item.role'. Supported values are: 'user', 'assistant', "
            "'system'.", code="invalid_value", param="item.role",
        )
    content = data.get("content")
    if not isinstance(content, list):
        raise InvalidRequest("Missing required parameter: 'item.content'.",
                             code="missing_required_parameter", param="item.content")
    audio = b""
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest("content parts must be objects", code="invalid_type",
                                 param=f"item.content[{index}]")
        if part.get("type") == "input_audio" and "audio" in part:
            audio += decode_audio(part.pop("audio"), f"item.content[{index}].audio")
            part.setdefault("transcript", None)
    return Item(data, audio)


def _require_str(data: Mapping[str, Any], key: str) -> None:
    if not isinstance(data.get(key), str):
        raise InvalidRequest(f"Missing required parameter: 'item.{key}'.",
                             code="missing_required_parameter", param=f"item.{key}")


#: Where ``conversation.item.create`` puts an item when it names no ``previous_item_id``.
APPEND: Any = object()


class Conversation:
    """Items in conversation order, addressable by id."""

    def __init__(self) -> None:
        self._items: list[Item] = []

    def __iter__(self) -> Iterator[Item]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def last_id(self) -> str | None:
        """Id of the last item, or None when the conversation is empty."""
        return self._items[-1].id if self._items else None

    def previous_id(self, item_id: str) -> str | None:
        """Id of the item just before ``item_id``, or None (first, or not present)."""
        for before, item in zip([None, *self._items], self._items, strict=False):
            if item.id == item_id:
                return before.id if before is not None else None
        return None

    def get(self, item_id: Any) -> Item | None:
        """The item with that id, or None."""
        for item in self._items:
            if item.id == item_id:
                return item
        return None

    def check_insert(self, item: Item, previous_item_id: Any = APPEND) -> None:
        """Raise :class:`InvalidRequest` unless :meth:`insert` would accept these."""
        if self.get(item.id) is not None:
            raise InvalidRequest(f"Item with id '{item.id}' already exists.",
                                 code="invalid_value", param="item.id")
        if previous_item_id in (APPEND, None, "root"):
            return
        if self.get(previous_item_id) is None:
            raise InvalidRequest(
                f"Previous item with id '{previous_item_id}' not found.",
                code="invalid_value", param="previous_item_id",
            )

    def insert(self, item: Item, previous_item_id: Any = APPEND) -> str | None:
        """Add ``item`` after ``previous_item_id`` (``"root"``: first; absent: last) and
        return the id of the item now before it."""
        self.check_insert(item, previous_item_id)
        if previous_item_id in (APPEND, None):
            index = len(self._items)
        elif previous_item_id == "root":
            index = 0
        else:
            index = next(i for i, it in enumerate(self._items) if it.id == previous_item_id) + 1
        self._items.insert(index, item)
        return self._items[index - 1].id if index else None

    def delete(self, item_id: Any) -> Item | None:
        """Remove and return the item with that id, or None if there is none."""
        item = self.get(item_id)
        if item is not None:
            self._items.remove(item)
        return item

    def resolve(self, refs: Iterable[Any]) -> list[Item]:
        """Items named by a ``response.input`` list: references or inline items."""
        items: list[Item] = []
        for ref in refs:
            if isinstance(ref, Mapping) and ref.get("type") == "item_reference":
                found = self.get(ref.get("id"))
                if found is None:
                    raise InvalidRequest(f"Item with id '{ref.get('id')}' not found.",
                                         code="invalid_value", param="response.input")
                items.append(found)
            else:
                items.append(item_from_client(ref))
        return items


def latest_user_audio(items: Iterable[Item]) -> Item | None:
    """The most recent user message that carries audio, among ``items`` in order."""
    found: Item | None = None
    for item in items:
        if item.has_input_audio():
            found = item
    return found
