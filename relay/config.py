"""Settings: one declaration per setting; defaults, then the environment, then flags.

Each field of :class:`Settings` is declared once with :func:`~relay.settings_table.setting`:
default, ``relay serve`` flag, environment variable (``RELAY_*``, ``OPENAI_API_KEY``),
accepted values, help text and README row. The flags, the validation, the masked ``repr``
and the README's settings table (``relay settings --markdown``) all come from there.

This is the only module that reads the environment. Settings are built once at the edge
(the CLI, or a test) and passed down.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from . import settings_table as table
from .audio import (
    DEFAULT_OPUS_APPLICATION,
    DEFAULT_OPUS_BITRATE,
    DEFAULT_OPUS_COMPLEXITY,
    OPUS_APPLICATIONS,
)
from .audio.inbound_audio import REORDER_MS
from .base.webhook_signature import webhook_secret_problem
from .errors import ConfigError, InvalidRequest
from .logs import LOG_FORMATS, LogFormat
from .protocol.realtime.policy import FIELD_PATH, Policy, SessionRules, locked_policy
from .protocol.realtime.session_config import DEFAULT_MODEL, normalize_session
from .settings_table import HEADERS, INTEGER, LIST, Check, Kind, between, positive, setting
from .upstream import DEFAULT_LOCAL_MODE, LOCAL_MODES, LocalMode
from .webrtc.ice_servers import ice_servers_problem, mask_ice_server, parse_ice_server
from .webrtc.udp_ports import parse_udp_ports, workers_udp_problem

#: Default of ``peer_timeout``; how it was chosen is told where it is used
#: (relay/server/call_driver.py, ``CallDriver._watch_peer``).
PEER_TIMEOUT = 8.0
#: Longest a call ended by the relay waits for its last ``error`` event to leave (data
#: channel and sidebands) before its peer connection is closed; the supervisor's stop
#: grace counts it too.
FAREWELL_SECONDS = 1.0

#: ``--udp-ports``: one port, or a range.
UDP_PORTS = Kind(parse_udp_ports, "a port or a range LO-HI of ports from 1 to 65535",
                 "PORT|LO-HI")



def parse_workers(text: str) -> int:
    """``"4"`` → 4; ``"auto"`` → one per core of this machine."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    return int(text)


#: ``--workers``: a number of processes, or ``auto``.
WORKERS = Kind(parse_workers, "a number of processes or auto", "N|auto")

#: The environment a supervisor adds for each of its workers (relay/cluster/supervisor.py).
WORKER_INDEX_ENV = "RELAY_WORKER_INDEX"
WORKER_DIR_ENV = "RELAY_WORKER_DIR"

EventLoop = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: tuple[EventLoop, ...] = ("auto", "uvloop", "asyncio")

#: Shortest signing secret accepted: 128 bits of hex.
MIN_SIGNING_SECRET_CHARS = 32

RecordMode = Literal["off", "all"]
RECORD_MODES: tuple[RecordMode, ...] = ("off", "all")

AuthMode = Literal["open", "token"]
AUTH_MODES: tuple[AuthMode, ...] = ("open", "token")

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
OPENAI_LIVE_URL = "wss://api.openai.com/v1/live/sessions"

#: Addresses that listen everywhere, which no other relay can connect to.
WILDCARDS = ("0.0.0.0", "::", "")


# Checks of single settings the generic ones in relay.settings_table do not cover.

def _masked_ice_urls(urls: tuple[str, ...]) -> str:
    return repr(tuple(mask_ice_server(url) for url in urls))


def _ice_credentials(urls: tuple[str, ...]) -> list[str]:
    return [server.credential for server in map(parse_ice_server, urls) if server.credential]


def _header_values(headers: tuple[tuple[str, str], ...]) -> list[str]:
    # ``Authorization: Bearer KEY`` holds KEY on its own too.
    return [text for _, value in headers for text in (value, value.partition(" ")[2])]


def _ip_addresses(addresses: tuple[str, ...]) -> str | None:
    try:
        for address in addresses:
            ipaddress.ip_address(address)
    except ValueError:
        return "must be IP addresses"
    return None


def _public_addresses(addresses: tuple[str, ...]) -> str | None:
    problem = _ip_addresses(addresses)
    if problem is None and len({ipaddress.ip_address(a).version for a in addresses}) < len(
            addresses):
        return "must be one IP address per family (IPv4, IPv6)"
    return problem


def _model_names(models: tuple[str, ...]) -> str | None:
    # What may follow ``?model=`` unescaped, and more than any model id needs.
    if all(re.fullmatch(r"[A-Za-z0-9._:/-]+", model) for model in models):
        return None
    return "must be model names (letters, digits and . _ : / -)"


def _log_level(level: str) -> str | None:
    if level.upper() in logging.getLevelNamesMapping():
        return None
    return "must be a log level: DEBUG, INFO, WARNING, ERROR or CRITICAL"


def _agent_spec(spec: str | None) -> str | None:
    if spec is None:
        return None
    module, sep, attribute = spec.partition(":")
    if sep and all(name.isidentifier() for name in (*module.split("."), *attribute.split("."))):
        return None
    return "must be module:attribute, e.g. examples.weather_agent:agent"


def _auth_mode(mode: str | None) -> str | None:
    return None if mode is None or mode in AUTH_MODES else "must be one of open, token"


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or ``localhost``) is reachable only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def _signing_secrets(secrets: str | tuple[str, ...] | None) -> str | None:
    given = (secrets,) if isinstance(secrets, str) else secrets or ()
    if all(len(secret) >= MIN_SIGNING_SECRET_CHARS for secret in given):
        return None
    return f"must be at least {MIN_SIGNING_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)"


def _origins(origins: tuple[str, ...] | None) -> str | None:
    pattern = r"\*|https?://[^/\s*]+"  # an origin is scheme://host[:port], no path
    if origins is None or all(re.fullmatch(pattern, origin) for origin in origins):
        return None
    return "must be origins like https://app.example.com (scheme, host, port; no path) or *"


def _field_paths(paths: tuple[str, ...]) -> str | None:
    if all(FIELD_PATH.fullmatch(path) for path in paths):
        return None
    return "must be session field paths like instructions,tools,audio.output.voice"


def _optional(check: Check) -> Check:
    def optional(value: Any) -> str | None:
        return None if value is None else check(value)
    return optional


def _redis_url(url: str | None) -> str | None:
    if url is None or re.match(r"(rediss?|unix)://", url):
        return None
    return "must be a redis://, rediss:// or unix:// URL"


def mask_redis_url(url: str) -> str:
    """``url`` with its password (if any) hidden, for listings and logs."""
    return repr(re.sub(r"(://[^:@/]*:)[^@/]*@", r"\1***@", url))


def redis_password(url: str | None) -> list[str]:
    """The password ``url`` carries, if any (for the log's list of values to mask)."""
    password = urlsplit(url).password if url else None
    return [password] if password else []


def split_host_port(text: str) -> tuple[str, int]:
    """``"10.0.0.2:9000"`` / ``"[::1]:9000"`` → host and port; ``ValueError`` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(text)
    return host.strip("[]"), int(port)


def _host_port(text: str | None) -> str | None:
    try:
        if text is not None:
            split_host_port(text)
    except ValueError:
        return "must be HOST:PORT (e.g. 10.0.0.2:8090)"
    return None


def _http_url(url: str | None) -> str | None:
    if url is None or re.match(r"https?://[^/\s]+", url):
        return None
    return "must be an http:// or https:// URL"


def _session(session: Mapping[str, Any]) -> str | None:
    try:
        normalize_session(session)
    except InvalidRequest as exc:
        return f"is not a session the relay can use: {exc.message}"
    return None


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything the relay can be told. Immutable; derive variants with :meth:`replace`."""

    host: str = setting(
        "127.0.0.1", flag="--host", env="RELAY_HOST", metavar="ADDRESS",
        help="address to listen on")
    port: int = setting(
        8080, flag="--port", env="RELAY_PORT", check=between(1, 65535), help="port to listen on")
    #: Above 1 the process is a supervisor of that many workers (relay/cluster/), which
    #: share the port (SO_REUSEPORT), each with its own calls and UDP sockets.
    workers: int = setting(
        1, flag="--workers", env="RELAY_WORKERS", kind=WORKERS, check=between(1, 1024),
        help="worker processes sharing the port, each with its own calls (`auto`: one per "
             "core); a supervisor restarts any that dies")
    #: Set by the supervisor in each worker's environment; None: not a worker. With
    #: ``RELAY_INTERNAL_ADDRESS``, a worker's internal listener's port is its plus this index.
    worker_index: int | None = setting(
        None, env=WORKER_INDEX_ENV, kind=INTEGER, check=lambda i: None if i is None or i >= 0
        else "must be 0 or more", internal=True,
        help="this worker's index among the supervisor's workers (set by the supervisor)")
    #: The supervisor's private runtime directory (mode 0700), removed when it exits; each
    #: worker listens there on ``<owner>.sock`` for requests forwarded by its siblings.
    worker_dir: str | None = setting(
        None, env=WORKER_DIR_ENV, internal=True,
        help="the supervisor's private directory for its workers (set by the supervisor)")

    #: ``None`` means: the embedded local server, unless an API key is configured, in which
    #: case the hosted OpenAI endpoint.
    upstream_url: str | None = setting(
        None, flag="--upstream-url", env="RELAY_UPSTREAM_URL", metavar="URL",
        help="upstream Realtime WebSocket", shown="embedded server; OpenAI's when a key is set")
    #: ``None``: derived from ``upstream_url`` (its ``/v1/realtime`` path becomes
    #: ``/v1/live/sessions``), else OpenAI's.
    live_upstream_url: str | None = setting(
        None, flag="--live-upstream-url", env="RELAY_LIVE_UPSTREAM_URL", metavar="URL",
        help="upstream GPT-Live WebSocket (primary, `session.start`)",
        shown="beside the Realtime upstream; OpenAI's when a key is set")
    api_key: str | None = setting(
        None, env="OPENAI_API_KEY", secret=True, help="upstream key")
    #: E.g. ``(("api-key", "..."),)`` for Azure.
    upstream_headers: tuple[tuple[str, str], ...] = setting(
        (), flag="--upstream-header", env="RELAY_UPSTREAM_HEADERS", kind=HEADERS, secret=True,
        reveals=_header_values,
        help="extra upstream headers (Azure `api-key`)")
    model: str = setting(
        DEFAULT_MODEL, flag="--model", env="RELAY_MODEL", metavar="MODEL",
        help="model for the upstream session")
    #: What a call's ``session.model`` or ``?model=`` may name (the default model always).
    models: tuple[str, ...] = setting(
        (), flag="--models", env="RELAY_MODELS", check=_model_names, metavar="MODEL,...",
        help="models clients may request (`?model=` / `session.model`)", shown="any")
    default_session: Mapping[str, Any] = setting(
        {}, flag="--session", env="RELAY_SESSION", check=_session,
        help="default session (GA JSON) merged under each call's")

    #: Empty: none at all, so nothing is contacted offline (aiortc would otherwise use a
    #: public STUN server). TURN credentials ride in the URL (relay/webrtc/ice_servers.py);
    #: the environment keeps them out of ``ps``.
    ice_servers: tuple[str, ...] = setting(
        (), flag="--ice-server", env="RELAY_ICE_SERVERS", check=ice_servers_problem,
        metavar="URL", secret=True, mask=_masked_ice_urls, reveals=_ice_credentials,
        help="ICE servers: one `stun:HOST:PORT`, one `turn:USER:PASS@HOST:PORT[?transport=tcp]` "
             "or `turns:USER:PASS@HOST:PORT`", shown="none: no STUN is contacted")
    #: Empty: every interface address, as aioice picks them (never 127.0.0.1).
    ice_addresses: tuple[str, ...] = setting(
        (), flag="--ice-address", env="RELAY_ICE_ADDRESSES", check=_ip_addresses, metavar="IP",
        help="host addresses advertised in ICE", shown="every interface (loopback excluded)")
    #: Behind a 1:1 NAT (cloud instance, Docker's published ports, Kubernetes hostPort),
    #: each host candidate is also offered on this address with the same port.
    ice_public_addresses: tuple[str, ...] = setting(
        (), flag="--ice-public-address", env="RELAY_ICE_PUBLIC_ADDRESSES",
        check=_public_addresses, metavar="IP",
        help="public address of a 1:1 NAT in front of the relay (one per IP family), "
             "offered with each host candidate's port", shown="none")
    #: None: each call's ICE sockets get ports the OS picks. A range confines them (one
    #: port per call and address); one port carries every call (relay/webrtc/udp_ports.py).
    udp_ports: tuple[int, int] | None = setting(
        None, flag="--udp-ports", env="RELAY_UDP_PORTS", kind=UDP_PORTS,
        help="UDP ports for calls' ICE: a range `LO-HI` (a port per call and address), or "
             "one `PORT` every call shares; with `--workers N` a range is split between the "
             "workers, and one `PORT` becomes `PORT+i` for worker i", shown="any: the OS picks")
    #: Bearer keys accepted to create calls and mint client secrets. Not a flag: a command
    #: line is visible to every user of the machine.
    relay_api_keys: tuple[str, ...] = setting(
        (), env="RELAY_API_KEYS", secret=True,
        help="server keys: they create calls, mint client secrets, attach sidebands and read "
             "/stats and /metrics (token mode)", shown="none")
    #: None: ``token`` when keys are configured or the relay listens beyond loopback, else
    #: ``open`` (see :attr:`auth_mode`). Open on a public address must be asked for by name.
    auth: AuthMode | None = setting(
        None, flag="--auth", env="RELAY_AUTH", check=_auth_mode, metavar="open|token",
        help="`open`: any bearer is accepted; `token`: RELAY_API_KEYS or a minted `ek_` key "
             "is required", shown="open on a loopback address without keys, else token")
    #: Browsers enforce it: the relay answers every request, but a page on an origin not
    #: listed cannot read the answer. The relay's own page is same-origin and needs none.
    cors_origins: tuple[str, ...] | None = setting(
        None, flag="--cors-origins", env="RELAY_CORS_ORIGINS", kind=LIST, check=_origins,
        metavar="ORIGIN,...", help="origins whose pages may call the relay (`*`: any)",
        shown="`*` in open mode, none in token mode")
    #: Their values come from ``default_session``; relay/protocol/realtime/policy.py says who
    #: is bound.
    locked_fields: tuple[str, ...] = setting(
        (), flag="--locked-fields", env="RELAY_LOCKED_FIELDS", check=_field_paths,
        metavar="FIELD,...", help="session fields (GA paths, e.g. `instructions,tools,"
        "audio.output.voice`) clients may not change from RELAY_SESSION's values; an update "
        "that tries is refused whole", shown="none")
    #: Client secrets are sealed, self-contained tokens (relay/server/client_secrets.py).
    signing_secret: str | None = setting(
        None, env="RELAY_SIGNING_SECRET", secret=True, check=_signing_secrets,
        help="secret that seals and opens minted `ek_` client secrets (their AES-GCM key is "
             "derived from it); share it between relays behind one load balancer",
        shown="random per process: minted keys work only in that process")
    #: Rotation: the previous ``signing_secret`` moves here until its keys have expired.
    signing_secrets: tuple[str, ...] = setting(
        (), env="RELAY_SIGNING_SECRETS", secret=True, check=_signing_secrets,
        help="older signing secrets that still open client secrets but seal none (rotation)",
        shown="none")

    #: 20 ms (one WebRTC frame) is the lowest latency. 40 ms measured 20 ms more echo round
    #: trip (44 vs 23 ms) for 20% less relay CPU (scripts/bench, N = 12, three rounds; the
    #: echo upstream halves its deltas too, so with a real model expect about half that).
    uplink_chunk_ms: int = setting(
        20, flag="--uplink-chunk-ms", env="RELAY_UPLINK_CHUNK_MS", check=between(10, 1000, step=10),
        help="audio per `input_audio_buffer.append`, ms (40: +20 ms latency, less CPU)")
    #: A gap in the peer's packets waits this long for its missing packet before it is
    #: given up (concealed, or rebuilt from FEC); REORDER_MS in relay/audio/inbound_audio.py has
    #: the measurements behind the default. Nothing waits on a clean link.
    uplink_reorder_ms: int = setting(
        REORDER_MS, flag="--uplink-reorder-ms", env="RELAY_UPLINK_REORDER_MS",
        check=between(0, 1000), help="how long a gap in the peer's audio packets waits for "
        "a late packet before it is concealed, ms")
    #: The Opus the relay sends (24 kHz mono). relay/audio/encode.py has the measurements
    #: behind the defaults.
    opus_bitrate: int = setting(
        DEFAULT_OPUS_BITRATE, flag="--opus-bitrate", env="RELAY_OPUS_BITRATE",
        check=between(6000, 510000, unit="bits per second"),
        help="bit rate of the Opus sent to peers (24 kHz mono)")
    opus_application: str = setting(
        DEFAULT_OPUS_APPLICATION, flag="--opus-application", env="RELAY_OPUS_APPLICATION",
        choices=OPUS_APPLICATIONS, help="Opus mode sent to peers (`lowdelay`: CELT only)")
    opus_complexity: int = setting(
        DEFAULT_OPUS_COMPLEXITY, flag="--opus-complexity", env="RELAY_OPUS_COMPLEXITY",
        check=between(0, 10), help="libopus complexity, 0-10 (lower: less CPU, worse sound)")
    #: ``auto``: uvloop where it is installed (a dependency on Linux and macOS). In paired
    #: runs (scripts/bench, N = 12, three rounds) uvloop measured 0.80 of the right-sized
    #: echo's CPU against asyncio's 0.85, and later, with the GC tuned, 0.72 against 0.71.
    event_loop: EventLoop = setting(
        "auto", flag="--event-loop", env="RELAY_EVENT_LOOP", choices=EVENT_LOOPS,
        help="event loop to run on (`auto`: uvloop if installed)")
    #: Resident memory then follows the live calls instead of creeping up over many calls.
    trim_memory: bool = setting(
        True, env="RELAY_TRIM_MEMORY",
        help="give freed heap back to the OS after each call (glibc)")
    #: Deltas beyond it are dropped.
    playout_max_seconds: float = setting(
        120.0, env="RELAY_PLAYOUT_MAX_SECONDS", check=positive,
        help="most assistant audio buffered per call, seconds")
    #: More get 503 ``capacity_exceeded``.
    max_calls: int = setting(
        200, flag="--max-calls", env="RELAY_MAX_CALLS", check=positive,
        help="concurrent calls")
    #: Server keys are the operator's: only ``max_calls`` bounds them.
    max_calls_per_key: int = setting(
        10, env="RELAY_MAX_CALLS_PER_KEY", check=positive,
        help="concurrent calls per client secret (`ek_`); more get 429")
    call_rate_per_key: float = setting(
        10.0, env="RELAY_CALL_RATE_PER_KEY", check=positive,
        help="calls a client secret may create a minute (a minute's worth at once); "
             "more get 429 with Retry-After")
    #: Behind a reverse proxy every client has the proxy's address: raise it there, and
    #: limit per client at the proxy.
    call_rate_per_address: float = setting(
        60.0, env="RELAY_CALL_RATE_PER_ADDRESS", check=positive,
        help="calls one client address may create a minute (a minute's worth at once); "
             "more get 429 with Retry-After")
    max_body_bytes: int = setting(
        1024 * 1024, env="RELAY_MAX_BODY_BYTES", check=between(1024, 64 * 1024 * 1024),
        help="largest request body, bytes; more get 413")
    max_sdp_bytes: int = setting(
        256 * 1024, env="RELAY_MAX_SDP_BYTES", check=between(1024, 64 * 1024 * 1024),
        help="largest SDP offer (and form part), bytes; more get 413")
    #: The client gets an ``error`` event (``call_duration_exceeded``) a little before.
    max_call_seconds: float = setting(
        3600.0, env="RELAY_MAX_CALL_SECONDS", check=positive,
        help="longest a call may last, seconds (the client gets an `error` event first)")
    #: Chrome's own limit for data-channel messages (a=max-message-size) is 262144.
    client_max_message_bytes: int = setting(
        256 * 1024, env="RELAY_CLIENT_MAX_MESSAGE_BYTES", check=positive,
        help="largest data-channel message, bytes; larger ones get an `error` event")
    client_message_rate: float = setting(
        50.0, env="RELAY_CLIENT_MESSAGE_RATE", check=positive,
        help="data-channel messages a second (bursts of a second's worth, at least 10); "
             "more get an `error` event, and a sustained flood ends the call")
    #: Above 4 MiB (the WebSocket's own limit) the sideband's socket is closed (1009).
    sideband_max_message_bytes: int = setting(
        1024 * 1024, env="RELAY_SIDEBAND_MAX_MESSAGE_BYTES", check=between(1, 4 * 1024 * 1024),
        help="largest sideband message, bytes; larger ones get an `error` event")
    sideband_message_rate: float = setting(
        200.0, env="RELAY_SIDEBAND_MESSAGE_RATE", check=positive,
        help="sideband messages a second; more get an `error` event, and a sustained flood "
             "ends the call")
    #: A controller's cancel (a guardrail tripped) must silence the call: the reply queued
    #: for playout is what the user would otherwise go on hearing for seconds.
    sideband_cancel_clears_playout: bool = setting(
        True, env="RELAY_SIDEBAND_CANCEL_CLEARS_PLAYOUT",
        help="a sideband's `response.cancel` also flushes the reply audio queued for the "
             "peer and truncates the item where it was cut (false: only cancels upstream)")
    #: A sideband (``GET /v1/realtime?call_id=``) this many events behind is closed
    #: (1013), so a slow controller never slows its call.
    sideband_max_events: int = setting(
        2000, env="RELAY_SIDEBAND_MAX_EVENTS", check=between(1, 1_000_000),
        help="events a sideband may fall behind before it is closed")
    #: On SIGTERM (or Ctrl-C) new calls get 503 ``relay_draining`` and /readyz 503, while
    #: live calls go on until they end or this passes; the rest then get an ``error``
    #: event (``server_shutting_down``) and are ended (relay/server/drain.py).
    drain_timeout: float = setting(
        30.0, flag="--drain-timeout", env="RELAY_DRAIN_TIMEOUT", check=between(0, 86400),
        help="seconds live calls may go on after SIGTERM before they are ended (0: at once); "
             "new calls are refused meanwhile")
    connect_timeout: float = setting(
        30.0, env="RELAY_CONNECT_TIMEOUT", check=positive,
        help="seconds a call's peer has to connect before the call is closed")
    #: aiortc never reports a peer that vanished without a goodbye as disconnected (aioice
    #: gives up on consent only after 30 s).
    peer_timeout: float = setting(
        PEER_TIMEOUT, flag="--peer-timeout", env="RELAY_PEER_TIMEOUT", check=between(0.5, 600),
        help="seconds without media, RTCP or ICE checks from a connected peer before its "
             "call is ended (and its upstream session closed)")
    #: Imported once, at startup (relay/server/agent.py says what it may be).
    agent: str | None = setting(
        None, flag="--agent", env="RELAY_AGENT", check=_agent_spec, metavar="MODULE:ATTR",
        help="Agents SDK `RealtimeAgent` (or a factory of one) served on every call, "
             "through the sideband; needs `relay[agents]`")
    #: Until then the client's data-channel events wait for the agent to configure the call.
    agent_start_timeout: float = setting(
        10.0, env="RELAY_AGENT_START_TIMEOUT", check=positive,
        help="seconds a call's agent has to start before the call goes on without it")

    #: Where relays find each other (relay/cluster/): the owner of each call id, and the
    #: cluster-wide limits. The URL may carry a password: it is masked.
    redis_url: str | None = setting(
        None, flag="--redis-url", env="RELAY_REDIS_URL", metavar="URL", secret=True,
        reveals=redis_password,
        check=_redis_url, mask=mask_redis_url,
        help="Redis shared by every relay of a cluster (`redis://HOST:PORT/DB` or "
             "`unix:///PATH`): follow-up requests reach the call's owner, limits count "
             "cluster-wide", shown="none: one process, limits per process")
    #: Entries of dead relays (and the calls they held toward the limits) vanish after it.
    owner_ttl: float = setting(
        15.0, env="RELAY_OWNER_TTL", check=between(1, 3600),
        help="seconds a relay's Redis entries outlive its last refresh (every third of it); "
             "a dead relay's call ids answer 404 after at most this long")
    #: Required with Redis unless the relay is a lone process on a specific address.
    internal_address: str | None = setting(
        None, flag="--internal-address", env="RELAY_INTERNAL_ADDRESS", check=_host_port,
        metavar="HOST:PORT",
        help="with Redis: a second listener, for requests other relays forward (with "
             "workers, worker i listens on PORT + i); the same routes and auth as the public "
             "one",
        shown="none: with Redis, the public listener")
    #: What other relays connect to, when ``internal_address`` is a wildcard (0.0.0.0).
    advertise_address: str | None = setting(
        None, flag="--advertise-address", env="RELAY_ADVERTISE_ADDRESS", check=_host_port,
        metavar="HOST:PORT",
        help="address other relays reach the internal listener at (with workers, PORT + i)",
        shown="the internal address")

    #: Recording (relay/recording/): the user's audio as received and what the user heard,
    #: one stereo Ogg/Opus file, with the events both ways and the call's metadata. ``off``
    #: still records the calls the operator asks for (a client secret minted with
    #: ``"record": true``, or ``?record=true`` on a call created with a server key).
    record: RecordMode = setting(
        "off", flag="--record", env="RELAY_RECORD", choices=RECORD_MODES,
        help="record calls (`all`: every call; `off`: only those the operator asks for "
             "when minting the client secret)")
    record_dir: str = setting(
        "recordings", flag="--record-dir", env="RELAY_RECORD_DIR", metavar="DIR",
        help="directory of the recordings, one directory per call (created if need be)")
    #: Retention, swept at start, after each recording and every minute.
    record_max_age_days: float = setting(
        30.0, env="RELAY_RECORD_MAX_AGE_DAYS", check=between(0, 36500),
        help="recordings older than this are removed, days (0: kept however old)")
    record_max_gb: float = setting(
        10.0, env="RELAY_RECORD_MAX_GB", check=between(0, 1_000_000),
        help="the recordings' total size; past it the oldest are removed, GB (0: no limit)")
    #: relay/server/webhooks.py: call.started, call.ended, recording.ready.
    webhook_url: str | None = setting(
        None, flag="--webhook-url", env="RELAY_WEBHOOK_URL", check=_http_url, metavar="URL",
        help="URL that receives the webhooks `call.started`, `call.ended` and "
             "`recording.ready`, signed with RELAY_WEBHOOK_SECRET (Standard Webhooks)")
    webhook_secret: str | None = setting(
        None, env="RELAY_WEBHOOK_SECRET", secret=True, check=webhook_secret_problem,
        help="signing secret of the webhooks: `whsec_` and base64 of random bytes")
    webhook_retry_seconds: float = setting(
        3600.0, env="RELAY_WEBHOOK_RETRY_SECONDS", check=positive,
        help="how long a webhook that fails is retried (backoff from 0.5 s to a minute), "
             "seconds")

    local_mode: LocalMode = setting(
        DEFAULT_LOCAL_MODE, flag="--local-mode", env="RELAY_LOCAL_MODE", choices=LOCAL_MODES,
        help="embedded upstream's answer (`assistant`: spoken words, a parrot without the "
             "`speech` extra; `echo`: at once, for benchmarks)")
    #: The embedded upstream connects to MCP servers for sessions' ``mcp`` tools; a client
    #: could otherwise make the relay's host fetch any URL, so the operator lists them.
    local_mcp_urls: tuple[str, ...] = setting(
        (), flag="--local-mcp-urls", env="RELAY_LOCAL_MCP_URLS", kind=LIST,
        metavar="URL,...", help="URL prefixes of the MCP servers the embedded upstream may "
        "connect to for a session's `mcp` tools (`*`: any)", shown="none: `mcp` tools are refused")
    log_level: str = setting(
        "INFO", flag="--log-level", env="RELAY_LOG_LEVEL", check=_log_level, metavar="LEVEL",
        help="log level (DEBUG, INFO, WARNING, ...)")
    loop_lag_warning: float = setting(
        0.1, flag="--loop-lag-warning", env="RELAY_LOOP_LAG_WARNING", check=positive,
        help="seconds of event-loop lag that log a warning (calls' audio then has gaps)")
    log_format: LogFormat = setting(
        "text", flag="--log-format", env="RELAY_LOG_FORMAT", choices=LOG_FORMATS,
        help="log lines: `text`, or `json` (one object a line; `call_id` a field)")

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v}' for k, v in table.masked_items(self))})"

    @cached_property
    def policy(self) -> Policy:
        """The locked session fields with the operator's values, worked out once."""
        return locked_policy(self.default_session, self.locked_fields)

    @cached_property
    def session_rules(self) -> SessionRules:
        """What a request's session and model become under this relay's policy."""
        return SessionRules(self.default_session, self.policy, self.model, self.models)

    def secret_strings(self) -> list[str]:
        """Every secret this relay's settings hold (keys, signing secrets, credentials),
        which no log line may show."""
        return table.secret_strings(self)

    def upstream_secrets(self) -> list[str]:
        """The secrets the relay sends its upstream (its key, its headers' values): what a
        verbose upstream could echo back, masked in whatever it says (relay.protocol.redact)."""
        return table.secret_strings(self, only=("api_key", "upstream_headers"))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``env`` (``os.environ`` by default), then ``overrides``, validated.

        Overrides whose value is ``None`` are ignored, so CLI flags that were not given
        leave the environment's value in place; a variable an override replaces is not read.
        """
        env = os.environ if env is None else env
        given = {name: value for name, value in overrides.items() if value is not None}
        settings = cls(**(table.read_environment(cls, env, skip=given) | given))
        settings.validate()
        return settings

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        """Add every setting's flag to ``parser`` (for ``relay serve``)."""
        table.add_flags(parser, cls)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None,
                  ) -> Settings:
        """Settings from ``env`` and the flags :meth:`add_flags` added, as parsed in ``args``."""
        return cls.from_env(env, **table.read_flags(cls, args))

    @classmethod
    def names(cls, name: str) -> str:
        """How a person sets the field ``name``, for messages: ``"RELAY_PORT / --port"``."""
        return table.names(cls, name)

    def validate(self) -> None:
        """Raise :class:`~relay.errors.ConfigError` for values that cannot work."""
        table.validate(self)
        if self.auth_mode == "token" and not self.relay_api_keys:
            why = "RELAY_AUTH is token" if self.auth else (
                f"the relay listens on {self.host}, beyond loopback, so auth defaults to token")
            raise ConfigError(
                f"{why} but RELAY_API_KEYS is empty: set RELAY_API_KEYS to one or more server "
                "keys (comma-separated), or pass --auth open (RELAY_AUTH=open) to accept any "
                "bearer", param="relay_api_keys")
        problem = workers_udp_problem(self.udp_ports, self.workers) if self.udp_ports else None
        if problem:
            raise ConfigError(f"{self.names('udp_ports')} {problem} (with "
                              f"{self.names('workers')} {self.workers})", param="udp_ports")

        if self.redis_url and self.internal_address is None and (
                self.worker_index is not None or self.host in WILDCARDS):
            raise ConfigError(
                "RELAY_REDIS_URL is set but other relays cannot reach this one: set "
                "RELAY_INTERNAL_ADDRESS (and RELAY_ADVERTISE_ADDRESS if it is a wildcard), or "
                "listen on a specific RELAY_HOST", param="internal_address")
        if self.webhook_url and not self.webhook_secret:
            raise ConfigError("RELAY_WEBHOOK_URL is set but RELAY_WEBHOOK_SECRET is not: "
                              "webhooks are always signed (set it to whsec_ and base64 of "
                              "random bytes)", param="webhook_secret")
        if (self.internal_address is not None and self.advertise_address is None
                and split_host_port(self.internal_address)[0] in WILDCARDS):
            raise ConfigError("RELAY_INTERNAL_ADDRESS is a wildcard: set "
                              "RELAY_ADVERTISE_ADDRESS to the address other relays reach",
                              param="internal_address")

    @property
    def auth_mode(self) -> AuthMode:
        """``auth`` as given, else ``token`` with keys or beyond loopback, else ``open``."""
        if self.auth is not None:
            return self.auth
        return "token" if self.relay_api_keys or not is_loopback(self.host) else "open"

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """``cors_origins`` as given, else any (``*``) in open mode and none in token mode."""
        if self.cors_origins is not None:
            return self.cors_origins
        return ("*",) if self.auth_mode == "open" else ()

    @property
    def open_to_the_network(self) -> bool:
        """True when anyone who can reach a non-loopback address may use the relay."""
        return self.auth_mode == "open" and not is_loopback(self.host)

    @property
    def uses_local_upstream(self) -> bool:
        """True when calls go to the embedded local Realtime server."""
        return self.upstream_url is None and not self.api_key

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

    def live_upstream_target(self) -> tuple[str, dict[str, str]]:
        """URL and headers of the remote GPT-Live upstream (a remote upstream is set)."""
        target = self.upstream_target()
        headers = target[1] if target is not None else {}
        if self.live_upstream_url is not None:
            return self.live_upstream_url, headers
        if self.upstream_url is not None:
            return live_url_beside(self.upstream_url), headers
        return OPENAI_LIVE_URL, headers


def live_url_beside(realtime_url: str) -> str:
    """The GPT-Live URL of the server whose Realtime URL is ``realtime_url``: same scheme
    and host, path ``/v1/live/sessions`` (a path prefix before ``/v1`` is kept)."""
    parts = urlsplit(realtime_url)
    prefix = parts.path.split("/v1/", 1)[0] if "/v1/" in parts.path else ""
    return urlunsplit(parts._replace(path=prefix.rstrip("/") + "/v1/live/sessions",
                                     query=""))


def worker_environment(index: int, directory: str) -> dict[str, str]:
    """This process's environment, plus what makes a child process worker ``index`` of a
    supervisor whose runtime directory is ``directory``."""
    return {**os.environ, WORKER_INDEX_ENV: str(index), WORKER_DIR_ENV: directory}


def settings_markdown() -> str:
    """The README's settings table, rendered from the declarations above."""
    return table.markdown_table(Settings)


def settings_listing(settings: Settings) -> str:
    """One ``name = value`` line per setting, secrets masked."""
    return "".join(f"{name} = {value}\n" for name, value in table.masked_items(settings))
