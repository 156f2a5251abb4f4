"""The local server's session configuration: the GA default, ``session.update``, VAD settings."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from ...protocol.realtime.session_config import (
    DEFAULT_TURN_DETECTION,
    PCM24K,
    TRANSCRIPTION,
    Session,
    deep_merge,
    default_transcription_session,
    normalize_session,
)
from .field_checks import check_session, check_turn_detection_keys
from .tools import check_tools

#: ``semantic_vad`` has no threshold or durations; its eagerness picks a silence length.
_EAGERNESS_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 250}

_SEMANTIC_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}


def apply_update(current: Mapping[str, Any], update: Any,
                 mcp_urls: Sequence[str] = ()) -> Session:
    """``current`` with the ``session`` of a ``session.update`` applied, or
    :class:`InvalidRequest` (and ``current`` untouched) when the update is not acceptable.
    ``mcp_urls`` are the MCP server URLs (prefixes) an ``mcp`` tool may name."""
    if not isinstance(update, Mapping):
        raise InvalidRequest(
            "Missing required parameter: 'session'.",
            code="missing_required_parameter", param="session",
        )
    if "type" not in update:
        raise InvalidRequest(
            "Missing required parameter: 'session.type'.",
            code="missing_required_parameter", param="session.type",
        )
    normalized = normalize_session(update)
    # Identity fields belong to the server; a client cannot rename its session.
    for key in ("object", "id"):
        normalized.pop(key, None)
    merged = deep_merge(current, normalized)
    if merged.get("type") == "realtime":
        check_session(merged)
    _check_formats(merged)
    _check_modalities(merged)
    check_tools(merged.get("tools"), merged.get("tool_choice"), "session", mcp_urls)
    merged["audio"]["input"]["turn_detection"] = _complete_turn_detection(
        _turn_detection_after(current, normalized)
    )
    return merged


def apply_transcription_update(current: Mapping[str, Any], update: Mapping[str, Any],
                               ) -> Session:
    """``current`` with a transcription session's ``session.update`` applied (from a
    realtime session: the transcription defaults with the update laid over them, the
    session's id kept); :class:`InvalidRequest` and ``current`` untouched otherwise."""
    normalized = normalize_session(update)
    for key in ("object", "id"):
        normalized.pop(key, None)
    base: Session = dict(current)
    if current.get("type") != TRANSCRIPTION:
        base = {**default_transcription_session(), "id": current.get("id")}
    merged = deep_merge(base, normalized)
    fmt = merged["audio"]["input"].get("format")
    if not is_pcm24k(fmt):
        raise InvalidRequest(
            f"This server only supports audio/pcm at {PCM24K['rate']} Hz for input, "
            f"not {fmt!r}.", code="invalid_value", param="session.audio.input.format")
    merged["audio"]["input"]["format"] = dict(PCM24K)
    transcription = merged["audio"]["input"].get("transcription")
    if transcription is not None and not isinstance(transcription, Mapping):
        raise InvalidRequest("transcription must be an object or null", code="invalid_type",
                             param="session.audio.input.transcription")
    merged["audio"]["input"]["turn_detection"] = _complete_turn_detection(
        _turn_detection_after(base, normalized))
    return merged


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """What the VAD and the turn logic need from ``audio.input.turn_detection``."""

    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool
    #: ``server_vad``'s ``idle_timeout_ms``: silence after which a response is started.
    idle_timeout_ms: int | None = None


def turn_detection(session: Mapping[str, Any]) -> TurnDetection | None:
    """The session's turn detection settings, or None when it is off."""
    raw = session["audio"]["input"].get("turn_detection")
    if not isinstance(raw, Mapping):
        return None
    if raw.get("type") == "semantic_vad":
        silence = _EAGERNESS_SILENCE_MS.get(str(raw.get("eagerness")), 500)
        return TurnDetection(
            threshold=float(DEFAULT_TURN_DETECTION["threshold"]),
            prefix_padding_ms=int(DEFAULT_TURN_DETECTION["prefix_padding_ms"]),
            silence_duration_ms=silence,
            create_response=raw.get("create_response") is not False,
            interrupt_response=raw.get("interrupt_response") is not False,
        )
    idle = raw.get("idle_timeout_ms")
    return TurnDetection(
        threshold=float(raw["threshold"]),
        prefix_padding_ms=int(raw["prefix_padding_ms"]),
        silence_duration_ms=int(raw["silence_duration_ms"]),
        create_response=raw.get("create_response") is not False,
        interrupt_response=raw.get("interrupt_response") is not False,
        idle_timeout_ms=idle if isinstance(idle, int) else None,
    )


def _turn_detection_after(current: Mapping[str, Any], update: Mapping[str, Any]) -> Any:
    """The turn detection an update leaves: merged into the old one, except that one of
    another type replaces it (a switch to ``semantic_vad`` must not keep a threshold)."""
    old = current["audio"]["input"].get("turn_detection")
    audio = update.get("audio")
    side = audio.get("input") if isinstance(audio, Mapping) else None
    if not isinstance(side, Mapping) or "turn_detection" not in side:
        return copy.deepcopy(old)
    new = side["turn_detection"]
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        if new.get("type", old.get("type")) == old.get("type"):
            return deep_merge(old, new)
    return copy.deepcopy(new)


def _complete_turn_detection(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            "turn_detection must be an object or null", code="invalid_type",
            param="session.audio.input.turn_detection",
        )
    kind = value.get("type", "server_vad")
    if kind == "server_vad":
        completed = deep_merge(DEFAULT_TURN_DETECTION, value)
        check_turn_detection_keys(completed)
        _check_server_vad(completed)
        return completed
    if kind == "semantic_vad":
        check_turn_detection_keys(value)
        completed = {key: value.get(key, default) for key, default in _SEMANTIC_DEFAULTS.items()}
        if value.get("model_version") is not None:
            completed["model_version"] = value["model_version"]
        return completed
    raise InvalidRequest(
        f"Invalid value: '{kind}'. Supported values are: 'server_vad' and 'semantic_vad'.",
        code="invalid_value", param="session.audio.input.turn_detection.type",
    )


def _check_server_vad(turn: Mapping[str, Any]) -> None:
    threshold = turn.get("threshold")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not (
        0.0 <= threshold <= 1.0
    ):
        raise InvalidRequest(
            "threshold must be a number between 0 and 1", code="invalid_value",
            param="session.audio.input.turn_detection.threshold",
        )
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        value = turn.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(
                f"{key} must be a non-negative integer", code="invalid_value",
                param=f"session.audio.input.turn_detection.{key}",
            )


def is_pcm24k(fmt: Any) -> bool:
    """Whether an audio format object is the only one this server speaks, 24 kHz PCM16
    (a missing ``rate`` means 24 kHz, as the hosted service reads it)."""
    return (isinstance(fmt, Mapping) and fmt.get("type") == PCM24K["type"]
            and fmt.get("rate", PCM24K["rate"]) == PCM24K["rate"])


def _check_formats(session: Session) -> None:
    audio = session.get("audio")
    if not isinstance(audio, Mapping):
        raise InvalidRequest("session.audio must be an object", code="invalid_type",
                             param="session.audio")
    for direction in ("input", "output"):
        side: Any = audio.get(direction)
        fmt = side.get("format") if isinstance(side, Mapping) else None
        if not is_pcm24k(fmt):
            raise InvalidRequest(
                f"This server only supports audio/pcm at {PCM24K['rate']} Hz for "
                f"{direction}, not {fmt!r}.",
                code="invalid_value", param=f"session.audio.{direction}.format",
            )
        side["format"] = dict(PCM24K)  # fill in the rate if the client left it out


def _check_modalities(session: Mapping[str, Any]) -> None:
    value = session.get("output_modalities")
    if value not in (["audio"], ["text"]):
        raise InvalidRequest(
            "output_modalities must be ['audio'] or ['text']", code="invalid_value",
            param="session.output_modalities",
        )
