"""Realtime events as plain dicts: ids, parsing client messages, and error events."""

from __future__ import annotations

import binascii
import json
import secrets
import string
from typing import Any

from ..errors import InvalidRequest, RelayError
from .json_input import load_json

Event = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 22) -> str:
    """``prefix`` followed by ``length`` random letters and digits (5.95 bits each).

    One read of the system's CSPRNG per id (event ids are made for every event); bytes
    of 248 and up are redrawn so every character is uniform.
    """
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(_ALPHABET[b % 62] for b in secrets.token_bytes(length + 8) if b < 248)
    return prefix + "".join(chars[:length])


def new_event_id() -> str:
    """A fresh server event id, shaped like the hosted service's."""
    return random_id("event_")


def parse_event(text: str | bytes) -> Event:
    """Parse one data-channel or WebSocket message into an event.

    Raises :class:`InvalidRequest` when it is not a JSON object with a string ``type``
    (:func:`~relay.protocol.json_input.load_json` says what JSON is taken).
    """
    value = load_json(text)
    if not isinstance(value, dict):
        raise InvalidRequest("An event must be a JSON object.", code="invalid_event")
    kind = value.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest(
            "The event is missing the 'type' field.", code="missing_required_parameter",
            param="type",
        )
    return value


def error_event(error: RelayError, event_id: str | None = None) -> Event:
    """The ``error`` server event for ``error``; ``event_id`` names the client event at fault."""
    body = error.to_dict()["error"]
    body["event_id"] = event_id
    return {"type": "error", "event_id": new_event_id(), "error": body}


class AudioAppend(dict[str, Any]):
    """An audio append of the relay's own, ``{"type": ..., "audio": <base64>}``: a plain
    event to everything that reads it (outboxes, measures, recordings), which
    :func:`dumps` writes without the JSON encoder. One goes upstream every 20 ms of every
    call, and its base64 and its type need no escaping."""


def audio_append(kind: str, audio: str) -> Event:
    """The append event ``kind`` (a constant of the protocol) carrying ``audio`` (base64
    from :func:`b64`)."""
    return AudioAppend(type=kind, audio=audio)


def b64(data: bytes) -> str:
    """``data`` in base64 (standard alphabet, padded): what appends carry."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def dumps(event: Event) -> str:
    """Compact JSON for the wire."""
    if type(event) is AudioAppend and len(event) == 2:
        # What json.dumps would write, in a fifth of the time.
        return f'{{"type":"{event["type"]}","audio":"{event["audio"]}"}}'
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
