"""Session configuration in the GA shape: merging, translating flat aliases, audio formats.

The relay always speaks 24 kHz mono PCM16 to the upstream (it transcodes to and from the
peer's codec itself), so every session it sends upstream has both audio formats pinned.
"""

from __future__ import annotations

import copy
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


def normalize_session(session: Mapping[str, Any]) -> Session:
    """Translate flat aliases into the GA shape and check what must hold.

    Accepts ``{"session": {...}}`` wrapping (older docs) as well as the bare object.
    Raises :class:`InvalidRequest` for a session that is not an object or whose ``type``
    is not ``"realtime"``.
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
    kind = out.get("type", "realtime")
    if kind != "realtime":
        raise InvalidRequest(
            f"session.type must be 'realtime' for a voice call, not {kind!r}",
            code="invalid_value", param="session.type",
        )
    out["type"] = "realtime"
    audio = out.get("audio")
    if audio is not None and not isinstance(audio, Mapping):
        raise InvalidRequest("session.audio must be an object", code="invalid_type",
                             param="session.audio")
    return out


def layer_sessions(*layers: Mapping[str, Any] | None) -> Session:
    """Lay each session over the ones before it (e.g. server defaults, a client secret's
    session, the call's own), each normalized first; empty layers are skipped."""
    session: Session = {"type": "realtime"}
    for layer in layers:
        if layer:
            session = deep_merge(session, normalize_session(layer))
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
    full = _overlay(default_session(model), normalize_session(session))
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
    """``session`` with both audio formats set to the 24 kHz PCM16 the relay speaks."""
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
