"""Server events checked against the official ``openai`` package's typed models."""

from __future__ import annotations

from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

_SERVER_EVENTS: TypeAdapter[RealtimeServerEvent] = TypeAdapter(RealtimeServerEvent)


def server_event(message: str | dict[str, Any]) -> RealtimeServerEvent:
    """``message`` (wire JSON, or a parsed event) as the openai package's typed server event;
    raises pydantic's ``ValidationError`` when it is not one."""
    if isinstance(message, str):
        return _SERVER_EVENTS.validate_json(message)
    return _SERVER_EVENTS.validate_python(message)
