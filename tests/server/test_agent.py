"""``--agent module:attr``: resolved once at startup, with clear errors; the pieces a call's
agent is built from (its sideband URL, its model settings, its factory)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from agents.realtime import RealtimeAgent

from relay.__main__ import main
from relay.config import Settings
from relay.errors import AgentFailed, ConfigError
from relay.server.agent import (
    INSTALL_HINT,
    AgentSource,
    load_agent,
    loopback_base,
    model_settings,
    sideband_url,
)
from relay.server.app import AGENTS, create_app

from ..support import agents as broken

AGENT_MODULE = '''
from agents.realtime import RealtimeAgent

agent = RealtimeAgent(name="Helper", instructions="Help.")

class Agents:
    main = agent

def make(call_id, session):
    return RealtimeAgent(name=call_id, instructions=session.get("instructions", ""))

NOT_AN_AGENT = 42
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project as the current directory; sys.path is restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


def write_module(project: Path, name: str) -> None:
    (project / f"{name}.py").write_text(AGENT_MODULE)


def test_agent_spec_resolves_an_agent_a_factory_and_a_dotted_attribute(project: Path) -> None:
    # The module is found in the current directory, as the console script would not.
    write_module(project, "voice_app_resolves")
    agent = load_agent("voice_app_resolves:agent")
    assert isinstance(agent.target, RealtimeAgent) and agent.target.name == "Helper"
    assert load_agent("voice_app_resolves:Agents.main").target is agent.target
    assert callable(load_agent("voice_app_resolves:make").target)
    assert str(project) in sys.path


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_for_relay:agent",
     "RELAY_AGENT / --agent: cannot import no_such_module_for_relay (ModuleNotFoundError"),
    ("voice_app_errors:missing", "RELAY_AGENT / --agent: voice_app_errors has no attribute "
     "missing"),
    ("voice_app_errors:NOT_AN_AGENT", "RELAY_AGENT / --agent: voice_app_errors:NOT_AN_AGENT "
     "is a int; name a RealtimeAgent or a factory"),
    ("voice_app_errors", "RELAY_AGENT / --agent must be module:attribute"),
])
def test_agent_spec_that_cannot_work_is_a_config_error_at_startup(project: Path, spec: str,
                                                                  message: str) -> None:
    write_module(project, "voice_app_errors")
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")) as info:
        create_app(Settings(agent=spec))
    assert info.value.param == "agent"


def test_agent_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a relay without the agents extra sees: `import agents` fails.
    monkeypatch.setitem(sys.modules, "agents", None)
    monkeypatch.setitem(sys.modules, "agents.realtime", None)
    with pytest.raises(ConfigError) as info:
        load_agent("examples.weather_agent:agent")
    assert info.value.message == ("RELAY_AGENT / --agent needs the OpenAI Agents SDK, which "
                                  "is not installed: pip install 'relay[agents]'")
    assert INSTALL_HINT in info.value.message


def test_agent_cli_with_a_bad_spec_exits_2_before_serving(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "1", "--agent", "no_such_module_for_relay:agent"]) == 2
    assert capsys.readouterr().err.startswith(
        "relay: RELAY_AGENT / --agent: cannot import no_such_module_for_relay")


def test_agent_app_serves_the_spec_it_was_given() -> None:
    app = create_app(Settings(agent="examples.weather_agent:agent",
                              relay_api_keys=("sk-server",)))
    served = app[AGENTS]
    assert served.source.spec == "examples.weather_agent:agent"
    assert isinstance(served.source.target, RealtimeAgent)
    assert AGENTS not in create_app(Settings())


@pytest.mark.parametrize(("sockname", "host", "expected"), [
    (("127.0.0.1", 8123), "0.0.0.0", "ws://127.0.0.1:8123"),
    (("::1", 8123, 0, 0), "::", "ws://[::1]:8123"),
    (("10.1.2.3", 9000), "0.0.0.0", "ws://10.1.2.3:9000"),
    (None, "0.0.0.0", "ws://127.0.0.1:8080"),
    (None, "::", "ws://[::1]:8080"),
    (None, "192.0.2.7", "ws://192.0.2.7:8080"),
])
def test_agent_sideband_base_is_the_address_the_call_came_in_on(
        sockname: object, host: str, expected: str) -> None:
    assert loopback_base(sockname, Settings(host=host)) == expected


def test_agent_sideband_url_names_the_call() -> None:
    assert (sideband_url("ws://127.0.0.1:1", "rtc_u1_abc")
            == "ws://127.0.0.1:1/v1/realtime?call_id=rtc_u1_abc")


def test_agent_model_settings_keep_the_calls_audio_and_modalities() -> None:
    turn = {"type": "server_vad", "silence_duration_ms": 300}
    session = {"type": "realtime", "instructions": "the client's",
               "audio": {"input": {"turn_detection": turn}, "output": {"voice": "marin"}},
               "output_modalities": ["audio"], "tools": []}
    settings = model_settings(session)
    assert settings == {"audio": session["audio"], "output_modalities": ["audio"]}
    settings["audio"]["input"]["turn_detection"]["type"] = "semantic_vad"
    assert turn["type"] == "server_vad"  # a copy: the call's session is left alone
    assert model_settings({"type": "realtime"}) == {}


async def test_agent_factories_sync_and_async_get_the_call() -> None:
    session = {"type": "realtime", "instructions": "be brief"}
    made = await AgentSource("x:y", broken.session_echo_factory).agent_for("rtc_1", session)
    assert made.instructions == "rtc_1 be brief"
    with pytest.raises(AgentFailed, match="returned a str, not a RealtimeAgent"):
        await AgentSource("x:y", broken.not_an_agent).agent_for("rtc_1", session)
    with pytest.raises(RuntimeError, match="no agent for rtc_1"):
        await AgentSource("x:y", broken.raising_factory).agent_for("rtc_1", session)
    agent = broken.raising_tool_agent
    assert await AgentSource("x:y", agent).agent_for("rtc_1", session) is agent


def test_agent_readme_shows_the_example_as_it_is() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    block = readme.split("(examples/weather_agent.py), complete:\n\n```python\n", 1)[1]
    code = block.split("```", 1)[0]
    assert code in (root / "examples" / "weather_agent.py").read_text()
