"""What goes on the client's ``oai-events`` channel when an event is too large for it.

A data channel message may not exceed the peer's ``a=max-message-size`` (Chrome and aiortc
advertise 262144 bytes; aiortc assumes 65536 for a peer that names none, and raises on a
larger message). Some server events outgrow that in normal use:
``conversation.item.retrieved`` carries the item's whole audio, and agents-js asks for it
after every transcription and truncation. So for each event:

1. if its JSON fits, it goes as it is;
2. otherwise every base64 ``audio`` string in it is replaced by ``null`` and the event
   gains ``"relay_omitted": [paths of what was removed]`` (e.g. ``item.content[0].audio``);
   the audio stays retrievable upstream, and every other field is intact;
3. if even that does not fit, the client gets an ``error`` event instead, with code
   ``event_too_large``, naming the dropped event's type and ``event_id``.

The call never ends over it.
"""

from __future__ import annotations

from typing import Any

from ..errors import RelayError
from .events import Event, dumps, error_event

#: What aiortc assumes of a peer whose offer names no ``a=max-message-size``.
DEFAULT_MAX_MESSAGE_SIZE = 65536
#: Added to an event whose audio was removed: the paths of what was removed.
OMITTED_FIELD = "relay_omitted"
#: A UTF-8 character takes at most this many bytes: text this short always fits.
_MAX_UTF8_BYTES = 4


def channel_message(event: Event, limit: int) -> str:
    """The message to send for ``event`` on a channel taking ``limit`` bytes (0: any)."""
    text = dumps(event)
    if _fits(text, limit):
        return text
    stripped, omitted = _without_audio(event, "")
    if omitted:
        text = dumps({**stripped, OMITTED_FIELD: omitted})
        if _fits(text, limit):
            return text
    return dumps(oversize_error(event, len(dumps(event).encode()), limit))


def oversize_error(event: Event, size: int, limit: int) -> Event:
    """The ``error`` event that stands in for ``event`` when nothing of it fits."""
    event_id = event.get("event_id")
    named = f" {event_id}" if isinstance(event_id, str) else ""
    error = RelayError(
        f"The relay dropped the {event.get('type')} event{named}: it is {size} bytes, "
        f"over the data channel's limit of {limit} bytes, even without its audio.",
        code="event_too_large",
    )
    return error_event(error)


def _fits(text: str, limit: int) -> bool:
    if limit <= 0 or len(text) * _MAX_UTF8_BYTES <= limit:
        return True
    return len(text.encode()) <= limit


def _without_audio(value: Any, path: str) -> tuple[Any, list[str]]:
    """``value`` with every string under an ``audio`` key set to None, and their paths."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        omitted: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key == "audio" and isinstance(item, str) and item:
                out[key] = None
                omitted.append(where)
            else:
                out[key], inner = _without_audio(item, where)
                omitted += inner
        return out, omitted
    if isinstance(value, list):
        items: list[Any] = []
        omitted = []
        for index, item in enumerate(value):
            stripped, inner = _without_audio(item, f"{path}[{index}]")
            items.append(stripped)
            omitted += inner
        return items, omitted
    return value, []
