"""A GPT-Live session configuration: checked, resolved and updated, without I/O.

The hosted service checks a Live configuration strictly (unknown fields are refused), so
the relay does too, before any upstream is contacted: a bad configuration is one clear
error, naming the field, not a session that dies later. The WebRTC form
(``MediaSessionConfig``) adds ``idle_timeout_s`` and ``wake_policy`` and leaves the audio
format to the media transport; the WebSocket form (``SessionConfig``) may name
``audio.format``. Both name the ``model``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidRequest
from .wake import check_wake_config

Config = dict[str, Any]

LIVE_MODELS = ("gpt-live-1", "gpt-live-1.1")
DEFAULT_LIVE_MODEL = "gpt-live-1"
DEFAULT_VOICE = "marin"
#: The format the relay speaks on a Live WebSocket: its media path is 24 kHz PCM16.
PCM24K: Mapping[str, Any] = {"type": "audio/pcm", "rate": 24000}
#: What a client secret minted for GPT-Live carries as its session's ``type``.
LIVE_SECRET_TYPE = "live"
#: How long a hosted Live session lives (its ``expires_at``): 60 minutes.
SESSION_SECONDS = 3600

_COMMON = frozenset({"model", "audio", "client", "delegation", "input", "instructions",
                     "safety_identifier", "store", "triggers"})
_MEDIA_ONLY = frozenset({"idle_timeout_s", "wake_policy"})
_DELEGATION_TYPES = ("client", "responses", "decisions")


def check_config(value: Any, *, media: bool, param: str = "session") -> Config:
    """``value`` as a Live session configuration, or :class:`InvalidRequest` naming the
    field at fault. ``media`` selects the WebRTC form (no ``audio.format``)."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"'{param}' must be an object.", code="invalid_type",
                             param=param)
    allowed = _COMMON | _MEDIA_ONLY if media else _COMMON
    for key in value:
        if key not in allowed:
            raise InvalidRequest(f"Unknown parameter: '{param}.{key}'.",
                                 code="unknown_parameter", param=f"{param}.{key}")
    model = value.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"Missing required parameter: '{param}.model'.",
                             code="missing_required_parameter", param=f"{param}.model")
    _check_optional(value, "instructions", str, param)
    _check_optional(value, "safety_identifier", str, param)
    _check_optional(value, "store", bool, param)
    _check_optional(value, "input", list, param)
    _check_optional(value, "triggers", list, param)
    _check_audio(value.get("audio"), media=media, param=f"{param}.audio")
    check_delegation(value.get("delegation"), param=f"{param}.delegation")
    _check_client(value.get("client"), param=f"{param}.client")
    if media:
        check_wake_config(value, param)
    return copy.deepcopy(dict(value))


def check_servable(config: Mapping[str, Any], *, offline: bool) -> None:
    """Refuse, with the reason, what the relay cannot serve for a WebRTC session:
    ``offline`` (on the embedded server), delegation to a Responses or Decisions backend: a
    clear 400 beats a session that never starts. (The wake policy and idle timeout the
    relay serves itself, on any upstream: :mod:`.wake`.)"""
    owner = delegation_type(config)
    if offline and owner != "client":
        raise InvalidRequest(
            f"'{owner}' delegation needs a real backend model, which the embedded server "
            "does not have: use delegation {\"type\": \"client\"} (or none), or give the "
            "relay an upstream key.", code="delegation_unsupported",
            param="session.delegation.type")


def check_delegation(value: Any, *, param: str = "session.delegation") -> None:
    """A ``delegation`` value: null, or an object whose ``type`` is a known owner."""
    if value is None:
        return
    if not isinstance(value, Mapping) or value.get("type") not in _DELEGATION_TYPES:
        raise InvalidRequest(
            f"Invalid '{param}': expected null or an object whose 'type' is one of "
            + ", ".join(f"'{t}'" for t in _DELEGATION_TYPES) + ".",
            code="invalid_value", param=f"{param}.type")
    kind = value["type"]
    if kind != "client" and not isinstance(value.get(kind), Mapping):
        raise InvalidRequest(f"Missing required parameter: '{param}.{kind}'.",
                             code="missing_required_parameter", param=f"{param}.{kind}")


def delegation_type(config: Mapping[str, Any]) -> str:
    """Who handles delegated work: ``client`` (the application; also when omitted),
    ``responses`` or ``decisions``."""
    delegation = config.get("delegation")
    return str(delegation["type"]) if isinstance(delegation, Mapping) else "client"


def resolved(config: Mapping[str, Any], session_id: str, expires_at: int) -> Config:
    """The ``SessionResource`` a Live session reports: the configuration with its server
    defaults (the voice) and its identity."""
    session: Config = {"id": session_id, "expires_at": expires_at, "status": "active"}
    session.update(copy.deepcopy(dict(config)))
    audio = session.setdefault("audio", {})
    output = audio.setdefault("output", {})
    output.setdefault("voice", DEFAULT_VOICE)
    return session


def apply_update(config: Mapping[str, Any], update: Any) -> Config:
    """``config`` after a ``session.update`` (``SessionUpdateConfig``: ``delegation`` and
    ``triggers`` only; the delegation's type cannot change), or :class:`InvalidRequest`."""
    if not isinstance(update, Mapping):
        raise InvalidRequest("'session' must be an object.", code="invalid_type",
                             param="session")
    for key in update:
        if key not in ("delegation", "triggers"):
            raise InvalidRequest(
                f"'session.{key}' cannot change after the session started: a session "
                "update may change only 'delegation' and 'triggers'.",
                code="immutable_parameter" if key in _COMMON | _MEDIA_ONLY
                else "unknown_parameter", param=f"session.{key}")
    updated = copy.deepcopy(dict(config))
    if "delegation" in update:
        new = update["delegation"]
        check_delegation(new, param="session.delegation")
        if new is not None and delegation_type(config) != new["type"]:
            raise InvalidRequest("The delegation type cannot change during a session.",
                                 code="invalid_value", param="session.delegation.type")
        if new is not None:
            merged = dict(updated.get("delegation") or {})
            merged.update(new)
            updated["delegation"] = merged
    if "triggers" in update:
        if not isinstance(update["triggers"], list):
            raise InvalidRequest("'session.triggers' must be an array.",
                                 code="invalid_type", param="session.triggers")
        updated["triggers"] = copy.deepcopy(update["triggers"])
    return updated


#: The operator's locked fields (``RELAY_LOCKED_FIELDS``) that a Live configuration has
#: too, under the same path: they hold for Live sessions as for Realtime calls.
LOCKABLE = ("instructions", "audio.output.voice")


def apply_locks(config: Mapping[str, Any], policy: Mapping[str, Any],
                unset: Any) -> Config:
    """``config`` under the operator's locked fields: a field the client set to another
    value is :class:`InvalidRequest` (``locked_field``); an unset one takes the operator's
    value. ``unset`` is the marker of a field the operator locked without a value (no
    client may set it)."""
    locked = copy.deepcopy(dict(config))
    for path in LOCKABLE:
        if path not in policy:
            continue
        value, parts = policy[path], path.split(".")
        node: Any = locked
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, Mapping) else None
        present = isinstance(node, Mapping) and parts[-1] in node
        if present and (value is unset or node[parts[-1]] != value):
            raise InvalidRequest(
                f"{path} is set by the relay's operator and cannot be changed.",
                code="locked_field", param=f"session.{path}")
        if value is not unset and not present:
            target = locked
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = copy.deepcopy(value)
    return locked


def allowed_client_events(config: Mapping[str, Any]) -> frozenset[str] | None:
    """The client events a WebRTC frontend may send (None: all of them), from
    ``client.data_channel.allowed_client_events``."""
    value = _data_channel(config).get("allowed_client_events")
    if value is None or value == "all":
        return None
    return frozenset(v for v in value if isinstance(v, str))


def allowed_server_events(config: Mapping[str, Any]) -> frozenset[str] | None:
    """The server events a WebRTC frontend may receive (None: all), from
    ``client.data_channel.allowed_server_events``; a Responses event is named
    ``response.event:<its type>``."""
    value = _data_channel(config).get("allowed_server_events")
    if value is None or value == "all":
        return None
    names: set[str] = set()
    for selector in value:
        if isinstance(selector, Mapping):
            kind, inner = selector.get("type"), selector.get("response_event")
            names.add(f"{kind}:{inner}" if kind == "response.event" else str(kind))
    return frozenset(names)


def server_event_allowed(allowed: frozenset[str] | None, event: Mapping[str, Any]) -> bool:
    """Whether a frontend whose permissions are ``allowed`` may receive ``event``
    (``error`` always: a client must learn why its command failed)."""
    kind = event.get("type")
    if allowed is None or kind == "error":
        return True
    if kind == "response.event":
        inner = event.get("event")
        inner_type = inner.get("type") if isinstance(inner, Mapping) else None
        return f"response.event:{inner_type}" in allowed
    return kind in allowed


def _data_channel(config: Mapping[str, Any]) -> Mapping[str, Any]:
    client = config.get("client")
    channel = client.get("data_channel") if isinstance(client, Mapping) else None
    return channel if isinstance(channel, Mapping) else {}


def _check_optional(value: Mapping[str, Any], key: str, kind: type, param: str) -> None:
    item = value.get(key)
    if item is None:
        return
    wrong = not isinstance(item, kind) or (kind is int and isinstance(item, bool))
    if wrong:
        raise InvalidRequest(f"Invalid type for '{param}.{key}'.", code="invalid_type",
                             param=f"{param}.{key}")


def _check_audio(audio: Any, *, media: bool, param: str) -> None:
    if audio is None:
        return
    if not isinstance(audio, Mapping):
        raise InvalidRequest(f"'{param}' must be an object.", code="invalid_type",
                             param=param)
    for key in audio:
        if key not in ("format", "output") or (key == "format" and media):
            hint = (" WebRTC negotiates its audio format on the media transport."
                    if key == "format" else "")
            raise InvalidRequest(f"Unknown parameter: '{param}.{key}'.{hint}",
                                 code="unknown_parameter", param=f"{param}.{key}")
    fmt = audio.get("format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") not in (
            "audio/pcm", "audio/pcmu", "audio/pcma")):
        raise InvalidRequest(f"Invalid '{param}.format'.", code="invalid_value",
                             param=f"{param}.format")
    output = audio.get("output")
    if output is not None and not isinstance(output, Mapping):
        raise InvalidRequest(f"'{param}.output' must be an object.", code="invalid_type",
                             param=f"{param}.output")


def _check_client(client: Any, *, param: str) -> None:
    if client is None:
        return
    channel = client.get("data_channel") if isinstance(client, Mapping) else None
    if not isinstance(channel, Mapping):
        raise InvalidRequest(f"Missing required parameter: '{param}.data_channel'.",
                             code="missing_required_parameter", param=f"{param}.data_channel")
    for key in ("allowed_client_events", "allowed_server_events"):
        value = channel.get(key)
        if value is not None and value != "all" and not isinstance(value, list):
            raise InvalidRequest(f"'{param}.data_channel.{key}' must be 'all' or an array.",
                                 code="invalid_type", param=f"{param}.data_channel.{key}")


def sealed_live_config(sealed: Mapping[str, Any] | None) -> Config | None:
    """The Live configuration a client secret was sealed to (None: no client secret), or
    :class:`InvalidRequest` when the key was minted for a Realtime session."""
    if sealed is None:
        return None
    if sealed.get("type") != LIVE_SECRET_TYPE:
        raise InvalidRequest("This client secret was minted for a Realtime session; mint "
                             "one at /v1/live/client_secrets for GPT-Live.",
                             code="invalid_client_secret")
    return {k: copy.deepcopy(v) for k, v in sealed.items() if k != "type"}


def seal(requested: Mapping[str, Any] | None, sealed: Mapping[str, Any] | None,
         path: str = "session") -> Config:
    """``requested`` under the ``sealed`` configuration of a client secret: a field the key
    set keeps the key's value (the client may repeat it, not change it:
    :class:`InvalidRequest` ``locked_field``), a field it left out is the client's."""
    merged: Config = copy.deepcopy(dict(requested or {}))
    for key, value in (sealed or {}).items():
        here = f"{path}.{key}"
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = seal(merged[key], value, here)
        elif merged[key] != value:
            raise InvalidRequest(
                f"'{here}' is set by this session's client secret and cannot be changed.",
                code="locked_field", param=here)
    return merged
