"""Settings: defaults, then the environment (``RELAY_*``, ``OPENAI_API_KEY``), then flags.

This is the only module that reads the environment. Settings are built once at the edge
(the CLI, or a test) and passed down; secrets are masked in ``repr``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .audio import (
    DEFAULT_OPUS_APPLICATION,
    DEFAULT_OPUS_BITRATE,
    DEFAULT_OPUS_COMPLEXITY,
    OPUS_APPLICATIONS,
)
from .errors import InvalidRequest
from .protocol.session import DEFAULT_MODEL
from .upstream import LOCAL_MODES, LocalMode

EventLoop = Literal["auto", "uvloop", "asyncio"]

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"

#: Fields whose values are secrets: masked in repr, never logged.
_SECRET_FIELDS = frozenset({"api_key", "upstream_headers", "relay_api_keys"})


@dataclass(frozen=True)
class Settings:
    """Everything the relay can be told. Immutable; derive variants with :meth:`replace`."""

    host: str = "127.0.0.1"
    port: int = 8080

    #: Realtime WebSocket to use. ``None`` means: the embedded local server, unless an
    #: API key is configured, in which case the hosted OpenAI endpoint.
    upstream_url: str | None = None
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    #: Extra upstream headers, e.g. ``(("api-key", "..."),)`` for Azure.
    upstream_headers: tuple[tuple[str, str], ...] = ()
    #: Session defaults (GA shape) merged under each call's own session.
    default_session: Mapping[str, Any] = field(default_factory=dict)

    #: ICE servers for the relay's peers (``stun:``/``turn:`` URLs). Empty: none at all,
    #: so nothing is contacted offline (aiortc would otherwise use a public STUN server).
    ice_servers: tuple[str, ...] = ()
    #: Host addresses the relay advertises as ICE candidates. Empty: every interface
    #: address, as aioice picks them (which never includes 127.0.0.1).
    ice_addresses: tuple[str, ...] = ()

    #: Duration of each ``input_audio_buffer.append`` sent upstream. 20 ms (one WebRTC
    #: frame) is the lowest latency. 40 ms measured 20 ms more echo round trip (44 vs
    #: 23 ms) for 20% less relay CPU (scripts/bench, N = 12, three rounds; the echo
    #: upstream halves its deltas too, so with a real model expect about half that).
    uplink_chunk_ms: int = 20
    #: The Opus the relay sends (24 kHz mono): bit rate, libopus complexity (0-10: lower
    #: is cheaper and sounds worse) and mode (``voip``, ``audio`` or ``lowdelay``, the
    #: CELT-only mode). relay/audio/encode.py has the measurements behind the defaults.
    opus_bitrate: int = DEFAULT_OPUS_BITRATE
    opus_complexity: int = DEFAULT_OPUS_COMPLEXITY
    opus_application: str = DEFAULT_OPUS_APPLICATION
    #: Most assistant audio buffered per call; deltas beyond it are dropped.
    playout_max_seconds: float = 120.0
    #: Concurrent calls; more get 503 ``capacity_exceeded``.
    max_calls: int = 200
    #: A call whose peer has not connected by then is closed.
    connect_timeout: float = 30.0
    #: After each call, hand the heap pages it freed back to the OS (glibc only), so
    #: resident memory follows the live calls instead of creeping up over many calls.
    trim_memory: bool = True

    #: Bearer keys accepted to create calls and mint client secrets. Empty: no check.
    relay_api_keys: tuple[str, ...] = ()
    #: What the embedded upstream answers with: the user's words played back, or an
    #: immediate echo of the audio as it arrives (for benchmarks).
    local_mode: LocalMode = "parrot"
    log_level: str = "INFO"
    #: The event loop ``relay serve`` runs on. ``auto``: uvloop where it is installed
    #: (it is a dependency on Linux and macOS), else asyncio's own. In paired runs
    #: (scripts/bench, N = 12, three rounds) uvloop measured 0.80 of the right-sized
    #: echo's CPU against asyncio's 0.85, and later, with the GC tuned, 0.72 against 0.71.
    event_loop: EventLoop = "auto"

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @property
    def uses_local_upstream(self) -> bool:
        """True when calls go to the embedded local Realtime server."""
        return self.upstream_url is None and not self.api_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``env`` (``os.environ`` by default), then ``overrides``.

        Overrides whose value is ``None`` are ignored, so CLI flags that were not given
        leave the environment's value in place.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "OPENAI_API_KEY" in env:
            values["api_key"] = env["OPENAI_API_KEY"] or None
        simple: dict[str, tuple[str, Callable[[str], Any]]] = {
            "RELAY_HOST": ("host", str),
            "RELAY_PORT": ("port", int),
            "RELAY_UPSTREAM_URL": ("upstream_url", str),
            "RELAY_MODEL": ("model", str),
            "RELAY_UPLINK_CHUNK_MS": ("uplink_chunk_ms", int),
            "RELAY_PLAYOUT_MAX_SECONDS": ("playout_max_seconds", float),
            "RELAY_OPUS_BITRATE": ("opus_bitrate", int),
            "RELAY_OPUS_COMPLEXITY": ("opus_complexity", int),
            "RELAY_OPUS_APPLICATION": ("opus_application", str),
            "RELAY_MAX_CALLS": ("max_calls", int),
            "RELAY_CONNECT_TIMEOUT": ("connect_timeout", float),
            "RELAY_LOCAL_MODE": ("local_mode", str),
            "RELAY_LOG_LEVEL": ("log_level", str),
            "RELAY_EVENT_LOOP": ("event_loop", str),
            "RELAY_TRIM_MEMORY": ("trim_memory", boolean),
        }
        for var, (name, conv) in simple.items():
            if env.get(var):
                try:
                    values[name] = conv(env[var])
                except ValueError as exc:
                    raise InvalidRequest(f"{var} is not a valid {conv.__name__}") from exc
        for var, name in (
            ("RELAY_ICE_SERVERS", "ice_servers"),
            ("RELAY_ICE_ADDRESSES", "ice_addresses"),
            ("RELAY_API_KEYS", "relay_api_keys"),
        ):
            if env.get(var):
                values[name] = split_list(env[var])
        if env.get("RELAY_UPSTREAM_HEADERS"):
            values["upstream_headers"] = parse_headers(env["RELAY_UPSTREAM_HEADERS"].split("\n"))
        if env.get("RELAY_SESSION"):
            values["default_session"] = parse_session_json(env["RELAY_SESSION"], "RELAY_SESSION")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`InvalidRequest` for values that cannot work."""
        if not 10 <= self.uplink_chunk_ms <= 1000 or self.uplink_chunk_ms % 10:
            raise InvalidRequest("uplink_chunk_ms must be a multiple of 10 from 10 to 1000")
        if not 6000 <= self.opus_bitrate <= 510000:
            raise InvalidRequest("opus_bitrate must be from 6000 to 510000 bits per second")
        if not 0 <= self.opus_complexity <= 10:
            raise InvalidRequest("opus_complexity must be from 0 to 10")
        if self.opus_application not in OPUS_APPLICATIONS:
            raise InvalidRequest("opus_application must be one of "
                                 + ", ".join(OPUS_APPLICATIONS))
        if self.playout_max_seconds <= 0:
            raise InvalidRequest("playout_max_seconds must be positive")
        if self.local_mode not in LOCAL_MODES:
            raise InvalidRequest("local_mode must be one of " + ", ".join(LOCAL_MODES))
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise InvalidRequest("event_loop must be 'auto', 'uvloop' or 'asyncio'")
        for url in self.ice_servers:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise InvalidRequest("ICE servers are stun:, turn: or turns: URLs")

    def upstream_target(self) -> tuple[str, dict[str, str]] | None:
        """URL and headers of a remote upstream, or ``None`` for the embedded server."""
        if self.uses_local_upstream:
            return None
        url = self.upstream_url or OPENAI_REALTIME_URL
        if "model=" not in url and self.model:
            url += ("&" if "?" in url else "?") + f"model={self.model}"
        headers = dict(self.upstream_headers)
        if self.api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return url, headers


def boolean(value: str) -> bool:
    """Parse an on/off environment value."""
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_headers(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """``["api-key: x"]`` → ``(("api-key", "x"),)``; raises on a line with no colon."""
    headers = []
    for line in lines:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise InvalidRequest("an upstream header must look like 'Name: value'")
        headers.append((name.strip(), value.strip()))
    return tuple(headers)


def parse_session_json(text: str, what: str) -> dict[str, Any]:
    """Parse a JSON session object, naming ``what`` in the error."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value
