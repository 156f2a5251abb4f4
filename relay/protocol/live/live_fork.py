"""A fork of a stored GPT-Live session: the new session's configuration, without I/O.

``POST /v1/live/sessions/{id}/fork`` (``client.live.sessions.fork``) starts a new WebRTC
session from a stored one. Its ``session`` is a ``MediaSessionForkConfig``: overrides, not
a configuration. "The model, voice, frontend instructions, and prior conversation come
from the stored session"; a fork may change only

- ``client``: the frontend's data-channel permissions (omitted permissions inherit the
  stored values);
- ``delegation``: the stored session's Responses backend settings, only when it already
  delegates to Responses (``type`` is always ``responses``; it cannot change), omitted
  settings kept;
- ``store``: whether the fork is stored in turn (omitted: as the stored session was).

Anything else is refused as a create refuses an unknown field (``unknown_parameter``), so
a client asking for new instructions learns at once that a fork cannot have them.

The WebSocket fork (``client.live.forks.connect``: ``GET …/fork`` upgraded, then
``session.start`` with a ``ForkSessionConfig``) takes ``audio`` (its ``format`` only: the
new connection's) instead of ``client`` ("client overrides are only supported for WebRTC
forks"); the stored configuration's WebRTC-only fields (``client``, ``idle_timeout_s``,
``wake_policy``) do not carry over to it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidRequest
from .live_config import Config, check_delegation, delegation_type

#: The fields a WebRTC fork's ``session`` may carry (``MediaSessionForkConfig``).
FORK_FIELDS = ("client", "delegation", "store")
#: The fields a WebSocket fork's ``session.start`` may carry (``ForkSessionConfig``).
WEBSOCKET_FORK_FIELDS = ("audio", "delegation", "store")
#: What only a WebRTC session has: a WebSocket fork of a WebRTC session leaves it out.
WEBRTC_ONLY = ("client", "idle_timeout_s", "wake_policy")


def fork_config(stored: Mapping[str, Any], overrides: Any, *, media: bool = True,
                param: str = "session") -> Config:
    """The configuration of a fork of the session stored with ``stored`` (its creation's
    configuration), with ``overrides`` (the request's ``session``: omitted, null or an
    object) applied; :class:`InvalidRequest` naming the field at fault. ``media``: a
    WebRTC fork (else a WebSocket one). The result is still to be checked as a create's
    is (``check_config`` in that form, the operator's locks)."""
    config = copy.deepcopy(dict(stored))
    fields = FORK_FIELDS if media else WEBSOCKET_FORK_FIELDS
    if not media:
        config = {k: v for k, v in config.items() if k not in WEBRTC_ONLY}
    if overrides is None:
        return config
    if not isinstance(overrides, Mapping):
        raise InvalidRequest(f"'{param}' must be an object.", code="invalid_type",
                             param=param)
    for key in overrides:
        if key == "client" and not media:
            raise InvalidRequest(f"'{param}.client' overrides are only supported for WebRTC "
                                 "forks.", code="unknown_parameter", param=f"{param}.client")
        if key not in fields:
            raise InvalidRequest(
                f"Unknown parameter: '{param}.{key}'. A fork inherits the stored session's "
                "configuration and conversation; it may override only "
                + ", ".join(f"'{f}'" for f in fields) + ".",
                code="unknown_parameter", param=f"{param}.{key}")
    if "store" in overrides:
        if not isinstance(overrides["store"], bool):
            raise InvalidRequest(f"'{param}.store' must be a boolean.", code="invalid_type",
                                 param=f"{param}.store")
        config["store"] = overrides["store"]
    if "client" in overrides:
        client = overrides["client"]
        if not isinstance(client, Mapping):
            raise InvalidRequest(f"'{param}.client' must be an object.", code="invalid_type",
                                 param=f"{param}.client")
        config["client"] = _merged(config.get("client"), client)
    if "audio" in overrides:
        config["audio"] = _audio(config.get("audio"), overrides["audio"], f"{param}.audio")
    if "delegation" in overrides:
        config["delegation"] = _delegation(config, overrides["delegation"],
                                           f"{param}.delegation")
    return config


def _audio(stored: Any, value: Any, param: str) -> dict[str, Any]:
    """A WebSocket fork's ``audio``: only its ``format`` (the voice is the stored one's)."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"'{param}' must be an object.", code="invalid_type",
                             param=param)
    for key in value:
        if key != "format":
            raise InvalidRequest(f"Unknown parameter: '{param}.{key}'. A fork may set only "
                                 "its connection's audio format.",
                                 code="unknown_parameter", param=f"{param}.{key}")
    return _merged(stored, value)


def _delegation(config: Mapping[str, Any], value: Any, param: str) -> Any:
    check_delegation(value, param=param)
    if value is None or value.get("type") != "responses":
        raise InvalidRequest(f"'{param}.type' must be 'responses': a fork may only adjust "
                             "the stored session's Responses backend.",
                             code="invalid_value", param=f"{param}.type")
    if delegation_type(config) != "responses":
        raise InvalidRequest("The stored session does not delegate to Responses; a fork "
                             "cannot change its delegation type.",
                             code="invalid_value", param=f"{param}.type")
    return _merged(config.get("delegation"), value)


def _merged(base: Any, update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (an object, or nothing) with ``update``'s fields, objects merged in depth
    (omitted settings keep their values), anything else replaced."""
    merged = copy.deepcopy(dict(base)) if isinstance(base, Mapping) else {}
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
