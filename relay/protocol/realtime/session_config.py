"""Session configuration in the GA shape: merging, translating flat aliases, audio formats.

The relay always speaks 24 kHz mono PCM16 to the upstream (it transcodes to and from the
peer's codec itself), so every session it sends upstream has both audio formats pinned.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import InvalidRequest
from ..events import random_id

Session = dict[str, Any]

#: The model a session uses when nobody names one.
DEFAULT_MODEL = "gpt-realtime"

PCM24K: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}

_FORMAT_ALIASES: dict[str, dict[str, Any]] = {
    "pcm16": PCM24K,
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}

#: Flat (beta) field → path in the GA session.
_FLAT_ALIASES: dict[str, tuple[str, ...]] = {
    "input_audio_format": ("audio", "input", "format"),
    "output_audio_format": ("audio", "output", "format"),
    "turn_detection": ("audio", "input", "turn_detection"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "voice": ("audio", "output", "voice"),
    "speed": ("audio", "output", "speed"),
    "max_response_output_tokens": ("max_output_tokens",),
}

#: Server VAD defaults, as the hosted service documents them.
DEFAULT_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it: objects merge key by key, anything else
    (lists, scalars, ``null``) replaces. Neither argument is modified."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


#: The two kinds of session: a voice conversation, and live transcription of the user.
SESSION_TYPES = ("realtime", "transcription")
REALTIME, TRANSCRIPTION = SESSION_TYPES

#: What ``include`` may ask for (a transcription session's option, as the hosted API's).
INCLUDE_LOGPROBS = "item.input_audio_transcription.logprobs"

#: Top-level fields only a realtime session has: a transcription session naming one is
#: refused (the hosted API would not accept it either).
REALTIME_ONLY_FIELDS = frozenset({
    "instructions", "output_modalities", "tools", "tool_choice", "max_output_tokens",
    "truncation", "tracing", "prompt",
})


def normalize_session(session: Mapping[str, Any]) -> Session:
    """Translate flat aliases into the GA shape and check what must hold.

    Accepts ``{"session": {...}}`` wrapping (older docs) as well as the bare object.
    ``type`` is ``"realtime"`` (the default) or ``"transcription"``; a transcription
    session has only ``audio.input`` and ``include``. Raises :class:`InvalidRequest`
    naming the parameter for anything else.
    """
    if not isinstance(session, Mapping):
        raise InvalidRequest("session must be a JSON object", code="invalid_type", param="session")
    if set(session) == {"session"} and isinstance(session["session"], Mapping):
        session = session["session"]
    out: Session = {}
    nested: Session = {}
    for key, value in session.items():
        path = _FLAT_ALIASES.get(key)
        if path is None:
            if key == "modalities":
                out["output_modalities"] = _output_modalities(value)
            else:
                out[key] = copy.deepcopy(value)
            continue
        if key.endswith("_format"):
            value = _audio_format(value, key)
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = copy.deepcopy(value)
    out = deep_merge(nested, out)
    kind = out.get("type", REALTIME)
    if kind not in SESSION_TYPES:
        raise InvalidRequest(
            f"Invalid value: {str(kind)[:50]!r}. session.type must be 'realtime' or "
            "'transcription'.", code="invalid_value", param="session.type",
        )
    out["type"] = kind
    audio = out.get("audio")
    if audio is not None and not isinstance(audio, Mapping):
        raise InvalidRequest("session.audio must be an object", code="invalid_type",
                             param="session.audio")
    if kind == TRANSCRIPTION:
        _check_transcription(out)
    return out


def _check_transcription(session: Mapping[str, Any]) -> None:
    """A transcription session hears the user and says nothing: no output, no model
    behaviour; ``include`` may ask only for the transcription's logprobs."""
    for key in session:
        if key in REALTIME_ONLY_FIELDS:
            raise InvalidRequest(
                f"Unknown parameter: 'session.{key}'. A transcription session has no "
                f"{key}: it only transcribes the user's audio.",
                code="unknown_parameter", param=f"session.{key}")
    audio = session.get("audio") or {}
    for key in audio:
        if key != "input":
            raise InvalidRequest(
                f"Unknown parameter: 'session.audio.{key}'. A transcription session has "
                "input audio only.", code="unknown_parameter", param=f"session.audio.{key}")
    include = session.get("include")
    if include is None:
        return
    if not isinstance(include, list):
        raise InvalidRequest("session.include must be a list", code="invalid_type",
                             param="session.include")
    for entry in include:
        if entry != INCLUDE_LOGPROBS:
            raise InvalidRequest(
                f"Invalid value: {str(entry)[:80]!r}. Supported values are: "
                f"'{INCLUDE_LOGPROBS}'.", code="invalid_value", param="session.include")


def named_type(session: Mapping[str, Any]) -> str | None:
    """The ``type`` a session (bare or wrapped as ``{"session": {...}}``) names, or None
    when it names none."""
    if set(session) == {"session"} and isinstance(session["session"], Mapping):
        session = session["session"]
    kind = session.get("type")
    return normalize_session(session)["type"] if kind is not None else None


def session_type(session: Mapping[str, Any]) -> str:
    """``"realtime"`` or ``"transcription"``: what kind of session ``session`` is."""
    return TRANSCRIPTION if session.get("type") == TRANSCRIPTION else REALTIME


def as_type(session: Mapping[str, Any], kind: str) -> Session:
    """``session`` (normalized) made a session of ``kind``: a realtime session's fields a
    transcription session cannot have are dropped, and the other way round only its
    ``audio.input`` is kept. An operator's defaults (``RELAY_SESSION``, written for voice
    calls) thus still give a transcription call its input settings."""
    normalized = normalize_session({**session, "type": session.get("type", REALTIME)})
    if normalized["type"] == kind:
        return normalized
    audio = normalized.get("audio")
    kept: Session = {"type": kind}
    if isinstance(audio, Mapping) and isinstance(audio.get("input"), Mapping):
        kept["audio"] = {"input": copy.deepcopy(dict(audio["input"]))}
    if kind == REALTIME:
        return kept
    return normalize_session(kept)


def layer_sessions(*layers: Mapping[str, Any] | None) -> Session:
    """Lay each session over the ones before it (e.g. server defaults, a client secret's
    session, the call's own), each normalized first; empty layers are skipped. The last
    layer that names a ``type`` decides the kind of session, and earlier layers of the
    other kind give it only what it can have (:func:`as_type`)."""
    present = [layer for layer in layers if layer]
    named = [kind for kind in map(named_type, present) if kind is not None]
    kind = named[-1] if named else REALTIME
    session: Session = {"type": kind}
    for layer in present:
        session = deep_merge(session, as_type(layer, kind))
    return session


def default_session(model: str = DEFAULT_MODEL) -> Session:
    """A full GA session with the hosted service's defaults, as its ``session.created``
    and its ``client_secrets`` response describe one (with a fresh ``sess_`` id)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": random_id("sess_"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": dict(PCM24K),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_TURN_DETECTION),
            },
            "output": {"format": dict(PCM24K), "voice": "alloy", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
    }


#: What a transcription session that names no transcription model gets.
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"

#: Turn detection of a transcription session: server VAD, nothing to respond with.
DEFAULT_TRANSCRIPTION_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}


def default_transcription_session() -> Session:
    """A full GA transcription session with the hosted service's defaults, as its
    ``client_secrets`` response describes one (with a fresh ``sess_`` id)."""
    return {
        "type": TRANSCRIPTION,
        "object": "realtime.transcription_session",
        "id": random_id("sess_"),
        "audio": {
            "input": {
                "format": dict(PCM24K),
                "transcription": {"model": DEFAULT_TRANSCRIPTION_MODEL, "language": None,
                                  "prompt": ""},
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_TRANSCRIPTION_TURN_DETECTION),
            },
        },
        "include": [],
    }


#: Longest model name taken (hosted names are about 30 characters; Azure deployment
#: names at most 64).
MAX_MODEL_CHARS = 128
_MODEL_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:/@+-]{{0,{MAX_MODEL_CHARS - 1}}}")


def choose_model(session: Mapping[str, Any], query: str | None, *, default: str,
                 allowed: Sequence[str] = ()) -> str:
    """The upstream model of a call: ``session.model``, else the request's ``?model=``,
    else ``default``. ``allowed`` (empty: any) is the operator's list; the default is
    always allowed. Raises :class:`InvalidRequest` naming the parameter otherwise."""
    model, param = session.get("model"), "session.model"
    if model is None:
        model, param = query, "model"
    if model is None or model == "":
        return default
    if not isinstance(model, str):
        raise InvalidRequest("model must be a string", code="invalid_type", param=param)
    if model != default and not _MODEL_NAME.fullmatch(model):
        # It goes into the upstream's URL: a name no server has (10 KB long, spaces,
        # controls) would fail there, as a 502, instead of here.
        raise InvalidRequest(
            f"The model name {model[:40]!r}{'…' if len(model) > 40 else ''} is not a model "
            f"name: at most {MAX_MODEL_CHARS} characters of letters, digits and . _ - : / @ +",
            code="invalid_value", param=param)
    if allowed and model not in allowed and model != default:
        raise InvalidRequest(
            f"The model {model[:100]!r} is not available on this relay; it serves "
            + ", ".join(sorted({default, *allowed})) + ".",
            code="model_not_allowed", param=param,
        )
    return model


def effective_session(session: Mapping[str, Any], *, model: str = DEFAULT_MODEL,
                      expires_at: int = 0) -> Session:
    """Every field of the session a call asking for ``session`` runs with: the GA
    defaults with ``session`` laid over them, in the shape typed clients parse.

    An object whose ``type`` differs from the default's replaces it rather than merging
    (``semantic_vad`` keeps no ``threshold``, ``audio/pcmu`` no ``rate``). Identity
    fields are the server's: a fresh ``id``, ``object``, and ``model``, which is the
    relay's own because the upstream URL, not the session, picks the model.
    """
    normalized = normalize_session(session)
    if normalized["type"] == TRANSCRIPTION:
        # A transcription session has no model of its own: its transcription names one.
        full = _overlay(default_transcription_session(), normalized)
        full.update(object="realtime.transcription_session", id=random_id("sess_"),
                    expires_at=expires_at)
        return full
    full = _overlay(default_session(model), normalized)
    full.update(object="realtime.session", id=random_id("sess_"), model=model,
                expires_at=expires_at)
    return full


def _overlay(base: Mapping[str, Any], update: Mapping[str, Any]) -> Session:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        old = merged.get(key)
        if (isinstance(value, Mapping) and isinstance(old, Mapping)
                and value.get("type", old.get("type")) == old.get("type")):
            merged[key] = _overlay(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def pin_relay_formats(session: Mapping[str, Any]) -> Session:
    """``session`` with both audio formats set to the 24 kHz PCM16 the relay speaks (a
    transcription session has only the input one)."""
    if session.get("type") == TRANSCRIPTION:
        return deep_merge(session, {"audio": {"input": {"format": PCM24K}}})
    return deep_merge(session, {"audio": {"input": {"format": PCM24K},
                                          "output": {"format": PCM24K}}})


def interrupt_response(session: Mapping[str, Any]) -> bool:
    """Whether speech from the user should cut the assistant off, per this session.

    True unless turn detection is on and its ``interrupt_response`` is false; with turn
    detection off the upstream sends no ``speech_started``, so the answer does not matter.
    """
    audio = session.get("audio") or {}
    turn = (audio.get("input") or {}).get("turn_detection")
    if not isinstance(turn, Mapping):
        return True
    return turn.get("interrupt_response", True) is not False


def speech_padding_ms(session: Mapping[str, Any]) -> int:
    """How far before the detected start of speech this session's VAD reports it.

    ``server_vad`` reports ``audio_start_ms`` with ``prefix_padding_ms`` included (the
    audio kept before the onset); ``semantic_vad`` has no padding setting.
    """
    audio = session.get("audio") or {}
    turn = (audio.get("input") or {}).get("turn_detection")
    if not isinstance(turn, Mapping) or turn.get("type", "server_vad") != "server_vad":
        return 0
    padding = turn.get("prefix_padding_ms", DEFAULT_TURN_DETECTION["prefix_padding_ms"])
    return padding if type(padding) is int and padding > 0 else 0


#: Fields of a tool that hold credentials (an MCP tool's ``authorization`` and ``headers``):
#: they go upstream, and never back to a client.
TOOL_SECRET_FIELDS = ("authorization", "headers")


def conceal_tool_secrets(session: Mapping[str, Any]) -> Session:
    """``session`` without its tools' credentials (:data:`TOOL_SECRET_FIELDS`), for
    anything a client reads: answers, ``session.created``/``session.updated`` events."""
    tools = session.get("tools")
    if not isinstance(tools, list) or not any(_has_secret(tool) for tool in tools):
        return dict(session)
    concealed = [{k: v for k, v in tool.items() if k not in TOOL_SECRET_FIELDS}
                 if _has_secret(tool) else tool for tool in tools]
    return {**session, "tools": concealed}


def tool_secret_values(session: Mapping[str, Any]) -> list[str]:
    """Every credential string the tools of ``session`` carry (to mask them wherever the
    upstream might echo one: an error message quoting a failed MCP handshake)."""
    values: list[str] = []
    tools = session.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping):
            continue
        authorization = tool.get("authorization")
        if isinstance(authorization, str):
            values.append(authorization)
            values.append(authorization.removeprefix("Bearer ").strip())
        headers = tool.get("headers")
        if isinstance(headers, Mapping):
            values.extend(v for v in headers.values() if isinstance(v, str))
    return values


def _has_secret(tool: Any) -> bool:
    return isinstance(tool, Mapping) and any(k in tool for k in TOOL_SECRET_FIELDS)


def _audio_format(value: Any, key: str) -> Any:
    if isinstance(value, str):
        try:
            return copy.deepcopy(_FORMAT_ALIASES[value])
        except KeyError:
            raise InvalidRequest(f"unknown audio format {value!r}", code="invalid_value",
                                 param=key) from None
    return value


def _output_modalities(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidRequest("modalities must be a list", code="invalid_type", param="modalities")
    return ["audio"] if "audio" in value else ["text"]
