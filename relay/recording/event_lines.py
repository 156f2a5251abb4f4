"""A recorded call's events as JSON lines, audio payloads left out; without I/O.

Each line is one event that passed the relay, with when (seconds since the recording
began, on the audio file's clock) and which way::

    {"t": 1.234, "dir": "upstream_to_relay", "event": {"type": "response.created", ...}}

``dir`` is one of :data:`DIRECTIONS`; a sideband's events name it in ``"source"``. The
audio is in the recording's audio file, so base64 audio is not repeated here: an audio
payload becomes ``{"omitted_audio_bytes": N}``, and the relay's own
``input_audio_buffer.append`` events (the microphone's RTP, 50 a second) are not written
at all. Secrets are masked as the logs mask them.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..errors import InvalidRequest
from ..protocol.json_input import load_json
from ..protocol.redact import Redactor

#: Which way an event went.
DIRECTIONS = ("client_to_relay", "relay_to_client", "sideband_to_relay",
              "upstream_to_relay", "relay_to_upstream")

#: Events never written: their whole content is audio the audio file holds.
SKIPPED = frozenset({"input_audio_buffer.append"})

#: Fields whose string value is base64 audio, by the event types that carry it ("*": any
#: event, wherever the field appears, e.g. an item's content part).
_AUDIO_FIELDS = {"delta": ("response.output_audio.delta", "response.audio.delta"),
                 "audio": ("*",)}


def _audio_size(text: str) -> int:
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return len(text)


def without_audio(value: Any, kind: str) -> Any:
    """``value`` (an event, or a part of one) with its base64 audio payloads replaced."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            types = _AUDIO_FIELDS.get(key)
            if types is not None and isinstance(item, str) and item and (
                    "*" in types or kind in types):
                out[key] = {"omitted_audio_bytes": _audio_size(item)}
            else:
                out[key] = without_audio(item, kind)
        return out
    if isinstance(value, list):
        return [without_audio(item, kind) for item in value]
    return value


class EventLines:
    """Turns the events of one call into its JSON lines."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact

    def line(self, t: float, direction: str, message: str | bytes | dict[str, Any],
             source: str | None = None) -> str | None:
        """The line of one event that went ``direction`` at ``t`` (None: not written).

        ``message`` is the event as it went (JSON text) or as the relay built it; a
        message that is not a JSON object is written as ``{"unparsed": text}``.
        """
        event: Any
        if isinstance(message, dict):
            event = message
        else:
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            try:
                event = load_json(text)  # a client's: any depth, any escape
            except InvalidRequest:
                event = None
            if not isinstance(event, dict):
                event = {"unparsed": text[:4096]}
        kind = event.get("type")
        if kind in SKIPPED:
            return None
        record: dict[str, Any] = {"t": round(t, 3), "dir": direction}
        if source is not None:
            record["source"] = source
        record["event"] = without_audio(event, kind if isinstance(kind, str) else "")
        return self._redact(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
