"""Settings: the environment, the generated flags, validation, masking, the README table."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.__main__ import build_parser, main
from relay.config import Settings, redis_password, settings_listing, settings_markdown
from relay.errors import ConfigError, InvalidRequest, RelayError
from relay.settings_table import add_flags, declared, markdown_table, read_flags, setting

README = Path(__file__).resolve().parent.parent / "README.md"


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


# Every environment variable, one value of each parser kind, and what it becomes.
WEBHOOK_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
ENVIRONMENT = [
    ("RELAY_HOST", "::1", "host", "::1"),
    ("RELAY_AUTH", "open", "auth", "open"),
    ("RELAY_LOCKED_FIELDS", "instructions, audio.output.voice", "locked_fields",
     ("instructions", "audio.output.voice")),
    ("RELAY_CORS_ORIGINS", "https://a.example, http://127.0.0.1:8000", "cors_origins",
     ("https://a.example", "http://127.0.0.1:8000")),
    ("RELAY_SIGNING_SECRET", "s" * 32, "signing_secret", "s" * 32),
    ("RELAY_SIGNING_SECRETS", "o" * 32 + ", " + "p" * 40, "signing_secrets", ("o" * 32, "p" * 40)),
    ("RELAY_PORT", "9000", "port", 9000),
    ("RELAY_WORKERS", "3", "workers", 3),
    ("RELAY_WORKER_INDEX", "1", "worker_index", 1),
    ("RELAY_WORKER_DIR", "/run/relay-x", "worker_dir", "/run/relay-x"),
    ("RELAY_DRAIN_TIMEOUT", "0", "drain_timeout", 0.0),
    ("RELAY_UPSTREAM_URL", "wss://example.test/v1/realtime", "upstream_url",
     "wss://example.test/v1/realtime"),
    ("RELAY_LIVE_UPSTREAM_URL", "wss://example.test/v1/live/sessions", "live_upstream_url",
     "wss://example.test/v1/live/sessions"),
    ("OPENAI_API_KEY", "sk-abc", "api_key", "sk-abc"),
    ("RELAY_UPSTREAM_HEADERS", "api-key: k1\nX-Trace:  on \n", "upstream_headers",
     (("api-key", "k1"), ("X-Trace", "on"))),
    ("RELAY_MODEL", "gpt-realtime-mini", "model", "gpt-realtime-mini"),
    ("RELAY_MODELS", "gpt-realtime, gpt-realtime-mini,,", "models",
     ("gpt-realtime", "gpt-realtime-mini")),
    ("RELAY_SESSION", '{"type": "realtime", "instructions": "hi"}', "default_session",
     {"type": "realtime", "instructions": "hi"}),
    ("RELAY_ICE_SERVERS", "stun:stun.example.test:3478, turn:u:p%2Cq@t.example.test?transport=tcp",
     "ice_servers", ("stun:stun.example.test:3478", "turn:u:p%2Cq@t.example.test?transport=tcp")),
    ("RELAY_ICE_ADDRESSES", "10.0.0.2,::1", "ice_addresses", ("10.0.0.2", "::1")),
    ("RELAY_UDP_PORTS", "50000-50100", "udp_ports", (50000, 50100)),
    ("RELAY_ICE_PUBLIC_ADDRESSES", "203.0.113.7", "ice_public_addresses", ("203.0.113.7",)),
    ("RELAY_API_KEYS", "sk-one, sk-two", "relay_api_keys", ("sk-one", "sk-two")),
    ("RELAY_UPLINK_CHUNK_MS", "40", "uplink_chunk_ms", 40),
    ("RELAY_UPLINK_REORDER_MS", "100", "uplink_reorder_ms", 100),
    ("RELAY_OPUS_BITRATE", "32000", "opus_bitrate", 32000),
    ("RELAY_OPUS_APPLICATION", "voip", "opus_application", "voip"),
    ("RELAY_OPUS_COMPLEXITY", "5", "opus_complexity", 5),
    ("RELAY_EVENT_LOOP", "asyncio", "event_loop", "asyncio"),
    ("RELAY_TRIM_MEMORY", "off", "trim_memory", False),
    ("RELAY_SIDEBAND_CANCEL_CLEARS_PLAYOUT", "off", "sideband_cancel_clears_playout", False),
    ("RELAY_PLAYOUT_MAX_SECONDS", "2.5", "playout_max_seconds", 2.5),
    ("RELAY_MAX_CALLS", "3", "max_calls", 3),
    ("RELAY_MAX_CALLS_PER_KEY", "2", "max_calls_per_key", 2),
    ("RELAY_MAX_CALL_SECONDS", "600", "max_call_seconds", 600.0),
    ("RELAY_CLIENT_MAX_MESSAGE_BYTES", "65536", "client_max_message_bytes", 65536),
    ("RELAY_CLIENT_MESSAGE_RATE", "20", "client_message_rate", 20.0),
    ("RELAY_SIDEBAND_MAX_MESSAGE_BYTES", "65536", "sideband_max_message_bytes", 65536),
    ("RELAY_SIDEBAND_MESSAGE_RATE", "100", "sideband_message_rate", 100.0),
    ("RELAY_CALL_RATE_PER_KEY", "0.5", "call_rate_per_key", 0.5),
    ("RELAY_CALL_RATE_PER_ADDRESS", "120", "call_rate_per_address", 120.0),
    ("RELAY_MAX_BODY_BYTES", "2048", "max_body_bytes", 2048),
    ("RELAY_MAX_SDP_BYTES", "4096", "max_sdp_bytes", 4096),
    ("RELAY_SIDEBAND_MAX_EVENTS", "50", "sideband_max_events", 50),
    ("RELAY_LOCAL_MODE", "echo", "local_mode", "echo"),
    ("RELAY_LOCAL_MCP_URLS", "http://127.0.0.1:9000/mcp, https://tools.example/",
     "local_mcp_urls", ("http://127.0.0.1:9000/mcp", "https://tools.example/")),
    ("RELAY_CONNECT_TIMEOUT", "7.5", "connect_timeout", 7.5),
    ("RELAY_PEER_TIMEOUT", "3.5", "peer_timeout", 3.5),
    ("RELAY_AGENT", "examples.weather_agent:agent", "agent", "examples.weather_agent:agent"),
    ("RELAY_AGENT_START_TIMEOUT", "2.5", "agent_start_timeout", 2.5),
    ("RELAY_LOG_LEVEL", "debug", "log_level", "debug"),
    ("RELAY_LOG_FORMAT", "json", "log_format", "json"),
    ("RELAY_LOOP_LAG_WARNING", "0.25", "loop_lag_warning", 0.25),
    ("RELAY_REDIS_URL", "redis://:pw@10.0.0.5:6379/0", "redis_url",
     "redis://:pw@10.0.0.5:6379/0"),
    ("RELAY_OWNER_TTL", "5", "owner_ttl", 5.0),
    ("RELAY_INTERNAL_ADDRESS", "10.0.0.2:8090", "internal_address", "10.0.0.2:8090"),
    ("RELAY_ADVERTISE_ADDRESS", "[fd00::2]:8090", "advertise_address", "[fd00::2]:8090"),
    ("RELAY_RECORD", "all", "record", "all"),
    ("RELAY_RECORD_DIR", "/var/lib/relay/recordings", "record_dir", "/var/lib/relay/recordings"),
    ("RELAY_RECORD_MAX_AGE_DAYS", "7", "record_max_age_days", 7.0),
    ("RELAY_RECORD_MAX_GB", "0.5", "record_max_gb", 0.5),
    ("RELAY_WEBHOOK_URL", "https://backend.example/hooks", "webhook_url",
     "https://backend.example/hooks"),
    ("RELAY_WEBHOOK_SECRET", WEBHOOK_SECRET, "webhook_secret", WEBHOOK_SECRET),
    ("RELAY_WEBHOOK_RETRY_SECONDS", "60", "webhook_retry_seconds", 60.0),
]
#: Settings that only work together with another: what goes with each in the test above.
COMPANIONS = {"RELAY_WEBHOOK_URL": {"RELAY_WEBHOOK_SECRET": WEBHOOK_SECRET}}


@pytest.mark.parametrize(("var", "text", "name", "value"), ENVIRONMENT)
def test_config_env_variable_sets_its_setting(var: str, text: str, name: str,
                                              value: Any) -> None:
    companions = COMPANIONS.get(var, {})
    settings = Settings.from_env({var: text, **companions})
    assert getattr(settings, name) == value
    assert settings.replace(**{name: getattr(Settings(), name)}) == Settings.from_env(
        companions)


def test_config_every_env_variable_is_tested() -> None:
    assert {s.env for _, s in declared(Settings)} == {var for var, *_ in ENVIRONMENT}


def test_config_defaults_when_the_environment_is_empty_or_blank() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"RELAY_PORT": "", "OPENAI_API_KEY": ""}) == Settings()
    assert Settings().uses_local_upstream


@pytest.mark.parametrize(("text", "value"), [
    ("on", True), ("1", True), ("TRUE", True), ("yes", True),
    ("off", False), ("0", False), ("false", False), ("No", False),
])
def test_config_booleans_read_on_and_off(text: str, value: bool) -> None:
    assert Settings.from_env({"RELAY_TRIM_MEMORY": text}).trim_memory is value


def test_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_MAX_CALLS", "7")
    assert Settings.from_env().max_calls == 7


def test_config_flags_override_the_environment() -> None:
    env = {"RELAY_PORT": "8000", "RELAY_HOST": "0.0.0.0", "RELAY_ICE_ADDRESSES": "10.0.0.2",
           "RELAY_API_KEYS": "sk-server"}
    settings = Settings.from_args(serve_args("--port", "9000", "--ice-address", "::1"), env)
    assert (settings.port, settings.host, settings.ice_addresses) == (9000, "0.0.0.0", ("::1",))


def test_config_a_flag_replaces_a_bad_environment_value_unread() -> None:
    settings = Settings.from_args(serve_args("--port", "9000"), {"RELAY_PORT": "eighty"})
    assert settings.port == 9000


def test_config_none_overrides_are_ignored() -> None:
    settings = Settings.from_env({"RELAY_PORT": "8000"}, port=None, model=None, max_calls=5)
    assert (settings.port, settings.model, settings.max_calls) == (8000, Settings().model, 5)


def test_config_repeated_flags_join_and_take_comma_lists() -> None:
    settings = Settings.from_args(serve_args(
        "--ice-address", "127.0.0.1,10.0.0.2", "--ice-address", "::1",
        "--upstream-header", "api-key: k", "--upstream-header", "X-A: b",
        "--models", "m1,m2", "--models", "m3"), {})
    assert settings.ice_addresses == ("127.0.0.1", "10.0.0.2", "::1")
    assert settings.upstream_headers == (("api-key", "k"), ("X-A", "b"))
    assert settings.models == ("m1", "m2", "m3")


# A valid argument for every flag, and the value it gives.
FLAGS: dict[str, tuple[str, Any]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "record": ("all", "all"),
    "record_dir": ("/srv/recordings", "/srv/recordings"),
    "webhook_url": ("http://127.0.0.1:9/hooks", "http://127.0.0.1:9/hooks"),
    "auth": ("open", "open"),
    "cors_origins": ("*", ("*",)),
    "locked_fields": ("tools", ("tools",)),
    "port": ("9001", 9001),
    "workers": ("2", 2),
    "drain_timeout": ("2.5", 2.5),
    "upstream_url": ("ws://127.0.0.1:9/v1/realtime", "ws://127.0.0.1:9/v1/realtime"),
    "live_upstream_url": ("ws://127.0.0.1:9/v1/live/sessions", "ws://127.0.0.1:9/v1/live/sessions"),
    "upstream_headers": ("api-key: k", (("api-key", "k"),)),
    "model": ("m", "m"),
    "models": ("m,n", ("m", "n")),
    "default_session": ('{"instructions": "x"}', {"instructions": "x"}),
    "ice_servers": ("stun:127.0.0.1:3478", ("stun:127.0.0.1:3478",)),
    "ice_addresses": ("127.0.0.1", ("127.0.0.1",)),
    "udp_ports": ("3478", (3478, 3478)),
    "ice_public_addresses": ("198.51.100.1", ("198.51.100.1",)),
    "uplink_chunk_ms": ("40", 40),
    "uplink_reorder_ms": ("0", 0),
    "opus_bitrate": ("24000", 24000),
    "opus_application": ("audio", "audio"),
    "opus_complexity": ("3", 3),
    "event_loop": ("asyncio", "asyncio"),
    "max_calls": ("9", 9),
    "peer_timeout": ("12", 12.0),
    "local_mode": ("echo", "echo"),
    "local_mcp_urls": ("*", ("*",)),
    "log_level": ("WARNING", "WARNING"),
    "log_format": ("json", "json"),
    "loop_lag_warning": ("0.5", 0.5),
    "agent": ("app.voice:make_agent", "app.voice:make_agent"),
    "redis_url": ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    "internal_address": ("10.0.0.2:8090", "10.0.0.2:8090"),
    "advertise_address": ("10.0.0.3:8090", "10.0.0.3:8090"),
}


@pytest.mark.parametrize("env", [
    {"RELAY_REDIS_URL": "redis://r:6379", "RELAY_HOST": "0.0.0.0", "RELAY_API_KEYS": "k"},
    {"RELAY_REDIS_URL": "redis://r:6379", "RELAY_WORKER_INDEX": "1"},
])
def test_config_redis_needs_an_address_other_relays_can_reach(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="other relays cannot reach this one") as info:
        Settings.from_env(env)
    assert info.value.param == "internal_address"
    Settings.from_env(env | {"RELAY_INTERNAL_ADDRESS": "10.0.0.2:8090"})


def test_config_redis_url_password_is_masked() -> None:
    listing = settings_listing(Settings(redis_url="redis://user:s3cret@r:6379/0"))
    assert "redis_url = 'redis://user:***@r:6379/0'" in listing and "s3cret" not in listing
    assert "redis_url = 'redis://r:6379'" in settings_listing(Settings(redis_url="redis://r:6379"))
    assert redis_password("redis://user:s3cret@r:6379/0") == ["s3cret"]
    assert redis_password("redis://r:6379") == redis_password(None) == []


def test_config_generated_parser_accepts_every_flag() -> None:
    flagged = {name: s.flag for name, s in declared(Settings) if s.flag}
    assert set(flagged) == set(FLAGS)
    argv = [item for name, flag in flagged.items() for item in (flag, FLAGS[name][0])]
    # (A webhook URL needs its secret, which is never a flag.)
    settings = Settings.from_args(serve_args(*argv), {"RELAY_WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert {name: getattr(settings, name) for name in FLAGS} == {
        name: value for name, (_, value) in FLAGS.items()}


@pytest.mark.parametrize(("var", "text", "message"), [
    ("RELAY_PORT", "http", "RELAY_PORT / --port must be an integer"),
    ("RELAY_PORT", "70000", "RELAY_PORT / --port must be from 1 to 65535"),
    ("RELAY_CONNECT_TIMEOUT", "soon", "RELAY_CONNECT_TIMEOUT must be a number"),
    ("RELAY_CONNECT_TIMEOUT", "0", "RELAY_CONNECT_TIMEOUT must be positive"),
    ("RELAY_PLAYOUT_MAX_SECONDS", "-1", "RELAY_PLAYOUT_MAX_SECONDS must be positive"),
    ("RELAY_PEER_TIMEOUT", "0.1", "RELAY_PEER_TIMEOUT / --peer-timeout must be from 0.5 to 600"),
    ("RELAY_TRIM_MEMORY", "maybe", "RELAY_TRIM_MEMORY must be on or off"),
    ("RELAY_UPLINK_CHUNK_MS", "25", "RELAY_UPLINK_CHUNK_MS / --uplink-chunk-ms must be a "
     "multiple of 10 from 10 to 1000"),
    ("RELAY_OPUS_BITRATE", "100", "RELAY_OPUS_BITRATE / --opus-bitrate must be from 6000 to "
     "510000 bits per second"),
    ("RELAY_OPUS_COMPLEXITY", "11", "RELAY_OPUS_COMPLEXITY / --opus-complexity must be from "
     "0 to 10"),
    ("RELAY_OPUS_APPLICATION", "music", "RELAY_OPUS_APPLICATION / --opus-application must be "
     "one of voip, audio, lowdelay"),
    ("RELAY_EVENT_LOOP", "trio", "RELAY_EVENT_LOOP / --event-loop must be one of auto, "
     "uvloop, asyncio"),
    ("RELAY_LOCAL_MODE", "mute", "RELAY_LOCAL_MODE / --local-mode must be one of assistant, "
     "parrot, echo"),
    ("RELAY_LOG_LEVEL", "loud", "RELAY_LOG_LEVEL / --log-level must be a log level"),
    ("RELAY_ICE_SERVERS", "http://x", "RELAY_ICE_SERVERS / --ice-server must be stun:HOST"),
    ("RELAY_ICE_SERVERS", "turn:a:b@x,turns:a:b@y", "RELAY_ICE_SERVERS / --ice-server has more "
     "than one turn:/turns: URL"),
    ("RELAY_ICE_PUBLIC_ADDRESSES", "192.0.2.1,192.0.2.2", "RELAY_ICE_PUBLIC_ADDRESSES / "
     "--ice-public-address must be one IP address per family"),
    ("RELAY_UDP_PORTS", "9-3", "RELAY_UDP_PORTS / --udp-ports must be a port or a range LO-HI"),
    ("RELAY_UDP_PORTS", "0", "RELAY_UDP_PORTS / --udp-ports must be a port or a range LO-HI"),
    ("RELAY_WORKERS", "0", "RELAY_WORKERS / --workers must be from 1 to 1024"),
    ("RELAY_WORKERS", "many", "RELAY_WORKERS / --workers must be a number of processes or auto"),
    ("RELAY_WORKER_INDEX", "-1", "RELAY_WORKER_INDEX must be 0 or more"),
    ("RELAY_DRAIN_TIMEOUT", "-1", "RELAY_DRAIN_TIMEOUT / --drain-timeout must be from 0 to"),
    ("RELAY_ICE_ADDRESSES", "localhost", "RELAY_ICE_ADDRESSES / --ice-address must be IP "
     "addresses"),
    ("RELAY_UPSTREAM_HEADERS", "no colon", "RELAY_UPSTREAM_HEADERS / --upstream-header must "
     "be 'Name: value' lines"),
    ("RELAY_SESSION", "{nope", "RELAY_SESSION / --session must be a JSON object"),
    ("RELAY_SESSION", "[1]", "RELAY_SESSION / --session must be a JSON object"),
    ("RELAY_SESSION", '{"type": "translation"}', "RELAY_SESSION / --session is not a "
     "session the relay can use: Invalid value: 'translation'. session.type must be "
     "'realtime' or 'transcription'"),
    ("RELAY_MODELS", "gpt-realtime, two words", "RELAY_MODELS / --models must be model names"),
    ("RELAY_AGENT", "examples/weather_agent.py", "RELAY_AGENT / --agent must be "
     "module:attribute"),
    ("RELAY_AGENT", "examples.weather_agent:", "RELAY_AGENT / --agent must be module:attribute"),
    ("RELAY_AGENT_START_TIMEOUT", "0", "RELAY_AGENT_START_TIMEOUT must be positive"),
    ("RELAY_AUTH", "none", "RELAY_AUTH / --auth must be one of open, token"),
    ("RELAY_LOCKED_FIELDS", "audio..voice", "RELAY_LOCKED_FIELDS / --locked-fields must be "
     "session field paths"),
    ("RELAY_CORS_ORIGINS", "https://a.example/path", "RELAY_CORS_ORIGINS / --cors-origins "
     "must be origins"),
    ("RELAY_SIGNING_SECRET", "short", "RELAY_SIGNING_SECRET must be at least 32 characters"),
    ("RELAY_SIGNING_SECRETS", "s" * 32 + ",short", "RELAY_SIGNING_SECRETS must be at least 32"),
    ("RELAY_REDIS_URL", "10.0.0.5:6379", "RELAY_REDIS_URL / --redis-url must be a redis://"),
    ("RELAY_OWNER_TTL", "0.5", "RELAY_OWNER_TTL must be from 1 to 3600"),
    ("RELAY_RECORD", "some", "RELAY_RECORD / --record must be one of off, all"),
    ("RELAY_RECORD_MAX_GB", "-1", "RELAY_RECORD_MAX_GB must be from 0 to"),
    ("RELAY_WEBHOOK_URL", "backend.example/hooks", "RELAY_WEBHOOK_URL / --webhook-url must "
     "be an http:// or https:// URL"),
    ("RELAY_WEBHOOK_SECRET", "secret", "RELAY_WEBHOOK_SECRET must be whsec_"),
    ("RELAY_INTERNAL_ADDRESS", "10.0.0.2", "RELAY_INTERNAL_ADDRESS / --internal-address must "
     "be HOST:PORT"),
    ("RELAY_ADVERTISE_ADDRESS", "a:99999", "RELAY_ADVERTISE_ADDRESS / --advertise-address "
     "must be HOST:PORT"),
    ("RELAY_INTERNAL_ADDRESS", "0.0.0.0:8090", "RELAY_INTERNAL_ADDRESS is a wildcard: set "
     "RELAY_ADVERTISE_ADDRESS"),
])
def test_config_bad_value_is_a_config_error_naming_env_and_flag(var: str, text: str,
                                                                message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        Settings.from_env({var: text})
    assert not isinstance(info.value, InvalidRequest)
    assert info.value.param == next(name for name, s in declared(Settings) if s.env == var)


def test_config_bad_flag_reads_like_the_environment() -> None:
    with pytest.raises(ConfigError, match=re.escape("RELAY_PORT / --port must be an integer")):
        Settings.from_args(serve_args("--port", "http"), {})
    with pytest.raises(ConfigError, match="RELAY_MAX_CALLS / --max-calls must be positive"):
        Settings.from_args(serve_args("--max-calls", "0"), {})


def test_config_wrong_type_from_code_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("RELAY_PORT / --port must be an integer")):
        Settings.from_env({}, port="8080")


def test_config_cli_prints_config_errors_and_exits_2(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_OPUS_COMPLEXITY", "12")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "relay: RELAY_OPUS_COMPLEXITY / --opus-complexity must be from 0 to 10\n")
    assert issubclass(ConfigError, RelayError)


def test_config_repr_masks_secrets() -> None:
    settings = Settings(api_key="sk-upstream-secret", relay_api_keys=("sk-relay-secret",),
                        signing_secret="signing-secret-" + "x" * 20,
                        signing_secrets=("old-signing-secret-" + "y" * 20,),
                        upstream_headers=(("api-key", "azure-secret"),),
                        ice_servers=("turn:alice:turn-secret@t.example.test:3478",))
    shown = repr(settings) + settings_listing(settings)
    for secret in ("sk-upstream-secret", "sk-relay-secret", "azure-secret", "turn-secret",
                   "signing-secret", "old-signing-secret"):
        assert secret not in shown
    assert "turn:alice:***@t.example.test:3478" in shown
    assert "api_key='***'" in repr(settings) and "relay_api_keys = '***'" in shown
    assert "api_key=None" in repr(Settings()) and "port=8080" in repr(Settings())


def test_config_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    match = re.search(r"<!-- settings:[^\n]*-->\n(.*?)<!-- end of settings -->", text, re.S)
    assert match, "README.md lost its settings markers"
    assert match.group(1).strip() == settings_markdown().strip(), (
        "README.md's settings table is stale: paste `relay settings --markdown` between "
        "its markers")


def test_config_readme_table_has_a_row_per_setting() -> None:
    rows = settings_markdown().splitlines()[2:]
    internal = [name for name, s in declared(Settings) if s.internal]
    assert internal == ["worker_index", "worker_dir"]
    assert len(rows) == len(list(declared(Settings))) - len(internal)
    assert "| upstream key |  | `OPENAI_API_KEY` | none |" in rows
    assert ("| models clients may request (`?model=` / `session.model`) | `--models MODEL,...` "
            "(repeatable) | `RELAY_MODELS` (comma-separated) | any |") in rows
    assert any("`--local-mode assistant\\|parrot\\|echo`" in row for row in rows)


def test_config_workers_auto_is_one_per_core() -> None:
    assert Settings.from_env({"RELAY_WORKERS": "auto"}).workers == (os.cpu_count() or 1)
    assert Settings.from_args(serve_args("--workers", "AUTO"), {}).workers == (
        os.cpu_count() or 1)


@pytest.mark.parametrize(("ports", "workers", "message"), [
    ("50000-50003", 3, "RELAY_UDP_PORTS / --udp-ports has 4 ports: 3 workers need at least 6 "
     "(2 each) (with RELAY_WORKERS / --workers 3)"),
    ("65535", 2, "RELAY_UDP_PORTS / --udp-ports is one port, 65535, so worker i uses 65535 + i: "
     "2 workers need ports up to 65536, beyond 65535"),
])
def test_config_udp_ports_too_few_for_the_workers_is_a_config_error(
        ports: str, workers: int, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({"RELAY_UDP_PORTS": ports, "RELAY_WORKERS": str(workers)})
    Settings.from_env({"RELAY_UDP_PORTS": ports, "RELAY_WORKERS": "1"})


@dataclass(frozen=True)
class _Switched:
    loud: bool = setting(False, flag="--loud", env="X_LOUD", help="100% louder | clearer")


def test_config_boolean_flag_is_a_switch() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, _Switched)
    assert read_flags(_Switched, parser.parse_args(["--loud"])) == {"loud": True}
    assert read_flags(_Switched, parser.parse_args(["--no-loud"])) == {"loud": False}
    assert read_flags(_Switched, parser.parse_args([])) == {}
    assert "100% louder" in parser.format_help()
    assert markdown_table(_Switched).splitlines()[2] == (
        "| 100% louder \\| clearer | `--loud`, `--no-loud` | `X_LOUD` | off |")


@pytest.mark.parametrize(("host", "keys", "auth", "mode"), [
    ("127.0.0.1", (), None, "open"),
    ("::1", (), None, "open"),
    ("localhost", (), None, "open"),
    ("127.0.0.1", ("sk-server",), None, "token"),
    ("0.0.0.0", ("sk-server",), None, "token"),
    ("relay.example.test", ("sk-server",), None, "token"),
    ("0.0.0.0", (), "open", "open"),
    ("127.0.0.1", ("sk-server",), "open", "open"),
])
def test_config_auth_mode_defaults_to_open_only_on_loopback_without_keys(
        host: str, keys: tuple[str, ...], auth: str | None, mode: str) -> None:
    settings = Settings(host=host, relay_api_keys=keys, auth=auth)  # type: ignore[arg-type]
    settings.validate()
    assert settings.auth_mode == mode
    assert settings.open_to_the_network is (mode == "open" and host == "0.0.0.0")


@pytest.mark.parametrize(("env", "why"), [
    ({"RELAY_HOST": "0.0.0.0"}, "the relay listens on 0.0.0.0, beyond loopback"),
    ({"RELAY_AUTH": "token"}, "RELAY_AUTH is token"),
])
def test_config_token_mode_without_keys_says_what_to_set(env: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert why in info.value.message
    assert "set RELAY_API_KEYS" in info.value.message and "--auth open" in info.value.message
    assert info.value.param == "relay_api_keys"


def _relay_process(*argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "relay", *argv], cwd=README.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_config_cli_refuses_a_public_address_without_keys() -> None:
    process = _relay_process("serve", "--host", "0.0.0.0")
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "relay: the relay listens on 0.0.0.0, beyond loopback" in output
    assert "set RELAY_API_KEYS" in output


def test_config_cli_open_on_a_public_address_starts_and_warns() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _relay_process("serve", "--host", "0.0.0.0", "--port", str(port), "--auth", "open")
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "relay listening" in line:
                break
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert any("WARNING" in line and "auth is open on 0.0.0.0" in line for line in lines), lines
    assert "relay listening" in lines[-1]


def test_settings_secret_strings_are_every_secret_settings_value_and_its_parts() -> None:
    settings = Settings(
        api_key="sk-upstream", relay_api_keys=("rk-one", "rk-two"),
        signing_secret="s" * 32, signing_secrets=("o" * 32,),
        upstream_headers=(("Authorization", "Bearer hdr-key"), ("OpenAI-Beta", "realtime=v1")),
        ice_servers=("turn:user:ice-pass@192.0.2.1:3478",),
        redis_url="redis://:redis-pass@10.0.0.5:6379/0",
    )
    secrets = settings.secret_strings()
    for value in ("sk-upstream", "rk-one", "rk-two", "s" * 32, "o" * 32, "Bearer hdr-key",
                  "hdr-key", "ice-pass", "redis-pass"):
        assert value in secrets
    # Names and non-secret settings are not masked.
    assert "Authorization" not in secrets and "127.0.0.1" not in secrets


def test_config_live_upstream_sits_beside_the_realtime_upstream() -> None:
    local = Settings(upstream_url="ws://127.0.0.1:8765/v1/realtime?model=m")
    assert local.live_upstream_target() == ("ws://127.0.0.1:8765/v1/live/sessions", {})
    azure = Settings(upstream_url="wss://x.example/openai/v1/realtime",
                     upstream_headers=(("api-key", "k"),))
    assert azure.live_upstream_target() == ("wss://x.example/openai/v1/live/sessions",
                                            {"api-key": "k"})
    hosted = Settings(api_key="sk-abc")
    assert hosted.live_upstream_target() == ("wss://api.openai.com/v1/live/sessions",
                                             {"Authorization": "Bearer sk-abc"})
    chosen = Settings(api_key="sk-abc", live_upstream_url="wss://live.example/v1/live/sessions")
    assert chosen.live_upstream_target()[0] == "wss://live.example/v1/live/sessions"
