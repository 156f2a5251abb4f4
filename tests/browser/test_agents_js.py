"""The official Agents SDK for JavaScript, unmodified, in a real Chromium, on the relay.

The standing interop promise "agents-js in Chromium": ``@openai/agents-realtime`` (the
realtime half of ``@openai/agents``, which re-exports it), at the exact version pinned in
``agents_js/package.json``, holds a WebRTC voice session with the relay when only its base
URL changes. ``agents_js/entry.js`` is what an app would write — a ``RealtimeAgent`` in a
``RealtimeSession`` over ``new OpenAIRealtimeWebRTC({baseUrl})``, connected with an ``ek_``
key minted from the relay's ``POST /v1/realtime/client_secrets`` — plus instruments that
watch the data channel and the SDK's public events. esbuild bundles it once per test session
(the bundle is never committed); a second aiohttp server on another port serves the page,
so every request the SDK makes is cross-origin and goes through a CORS preflight. The
microphone is the speech fixture, looped; the embedded upstream parrots each utterance.

What agents-js 0.20.0 does on the wire (``dist/openaiRealtimeWebRtc.mjs``,
``dist/openaiRealtimeBase.mjs``, ``dist/realtimeSession.mjs``), and so what these tests hold
the relay to:

- The calls URL is ``baseUrl`` (default ``https://api.openai.com/v1/realtime/calls``), or
  ``connect({url})``, used verbatim: no ``?model=``. The model travels only as
  ``session.model`` in its ``session.update`` (default ``gpt-realtime-2.1``), which the
  relay leaves to the connection; the call's model comes from the minted key's session.
- In a browser it refuses any key that does not start with ``ek_`` (unless
  ``useInsecureApiKey``); ``apiKey`` may be an async function, called on each connect.
- It creates the ``oai-events`` channel in-band (no ``?dcid=``), adds the getUserMedia
  track, and posts the offer right after ``setLocalDescription`` (no candidates in it) as
  raw ``application/sdp`` with ``Authorization`` and ``X-OpenAI-Agents-SDK:
  openai-agents-sdk.<version>``: a preflighted request. The call id is the last segment of
  ``Location`` (so it must be exposed); on an error status it shows ``error.message``.
- When the channel opens it sends a full ``session.update`` (instructions, tools, model,
  ``audio.input.transcription`` ``gpt-4o-mini-transcribe``, ``semantic_vad`` unless told
  otherwise, ...) and holds ``connect()`` until a ``session.updated`` arrives — any one, not
  matched by id — or 5 s pass, when it resolves anyway with only a console warning. On
  ``session.created`` it sends a second update, ``{"tracing": "auto"}``. So two
  ``session.updated`` must come, one per update, and none unasked.
- Every server event is checked against its zod schema; one that fails is passed on as
  "generic" and skipped by the typed handlers (history, turns, usage) without an error.
- It sends ``conversation.item.retrieve`` on its own after
  ``conversation.item.input_audio_transcription.completed`` and after
  ``conversation.item.truncated`` (the embedded upstream transcribes nothing, so here the
  truncation an interrupt causes is what triggers it).
- ``interrupt()`` sends ``response.cancel`` only while a response is being generated
  (after ``response.created``, before ``response.done`` or ``response.output_audio.done``),
  then always ``output_audio_buffer.clear``.
- ``close()`` closes the channel and the peer connection and stops the microphone; it posts
  no hangup, so the relay must notice the peer leaving by itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ..conftest import base_url, live_calls
from .test_demo_page import (
    AUDIBLE,
    CHROMIUM,
    TRAILING_SILENCE_S,
    chromium,
    mic_file,
)

pytestmark = pytest.mark.browser

AGENTS_JS = Path(__file__).parent / "agents_js"
SERVER_KEY = "sk-agents-js-test"
INSTRUCTIONS = "You are the relay's test agent. Answer in one short sentence."
#: The same fast server VAD as the demo page's tests, in the SDK's camelCase.
TURN_DETECTION = {"type": "server_vad", "silenceDurationMs": 400, "prefixPaddingMs": 200}
#: agents-js resolves connect() after this long even when no session.updated came.
SDK_ACK_TIMEOUT_MS = 5000
PAGE = """<!doctype html>
<title>agents-js on the relay</title>
<link rel="icon" href="data:,">
<script src="/agents.js"></script>
"""


# ----------------------------------------------------------------- the bundle

def _installed(folder: Path) -> bool:
    """Whether ``node_modules`` holds exactly what ``package-lock.json`` pins (optional
    packages for other platforms, such as esbuild's, are never installed)."""
    try:
        wanted = json.loads((folder / "package-lock.json").read_text())["packages"]
        have = json.loads((folder / "node_modules" / ".package-lock.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    have_packages = have.get("packages", {})
    return all(have_packages.get(path, {}).get("version") == entry.get("version")
               for path, entry in wanted.items()
               if path and (path in have_packages or not entry.get("optional")))


def pinned_version() -> str:
    """The agents-js version ``package.json`` pins."""
    package = json.loads((AGENTS_JS / "package.json").read_text())
    return str(package["dependencies"]["@openai/agents-realtime"])


def _run(args: list[str], what: str) -> None:
    result = subprocess.run(args, cwd=AGENTS_JS, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def agents_js_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """agents-js and entry.js bundled by esbuild into one browser script, in a tmp dir."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package)")
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is absent (Debian's nodejs and npm packages): agents-js cannot be "
                    "installed and bundled; scripts/setup --test installs both")
    if not _installed(AGENTS_JS):
        # Without network (a test in a private namespace) only npm's cache can serve this.
        _run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline",
              "--fetch-retries=1"],
             "npm ci (scripts/setup --test runs it ahead of time)")
    bundle = tmp_path_factory.mktemp("agents_js") / "agents.js"
    _run([str(AGENTS_JS / "node_modules" / ".bin" / "esbuild"), "entry.js", "--bundle",
          "--format=iife", "--platform=browser", "--target=chrome110", "--minify",
          "--log-level=warning", f"--outfile={bundle}"], "esbuild")
    return bundle


@pytest.fixture(scope="session")
def looped_speech_mic(speech: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone: the speech fixture, then silence enough to end the turn."""
    return mic_file(tmp_path_factory.mktemp("mic"), speech, TRAILING_SILENCE_S)


# ----------------------------------------------------------------- the page

@asynccontextmanager
async def agent_page(relay: TestServer, bundle: Path, mic: Path,
                     profile: Path) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page on another origin than ``relay`` whose agent has connected to ``relay``;
    also yields the list the page's uncaught errors are collected in."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle)

    app.router.add_get("/", page)
    app.router.add_get("/agents.js", script)
    origin = TestServer(app, host="127.0.0.1")
    await origin.start_server()
    try:
        async with chromium(profile, mic) as context:
            tab = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            await tab.goto(f"http://127.0.0.1:{origin.port}/")
            config = {"relay": base_url(relay), "serverKey": SERVER_KEY,
                      "instructions": INSTRUCTIONS, "turnDetection": TURN_DETECTION}
            await asyncio.wait_for(tab.evaluate("config => startAgent(config)", config), 15)
            try:
                yield tab, errors
            except BaseException:
                print("data channel, as the page saw it:", await describe_wire(tab))
                raise
    finally:
        await origin.close()


async def describe_wire(page: Any) -> str:
    """The data channel's messages so far, one line each (``>`` sent, ``<`` received),
    printed when a test fails so that a failure shows what the call looked like."""
    try:
        messages = await asyncio.wait_for(wire(page), 5)
    except Exception as exc:  # the page may be the thing that broke
        return f"unavailable ({exc!r})"
    lines = [f"{m['at']:8.0f} {'>' if m['dir'] == 'out' else '<'} {m['event']['type']}"
             + _detail(m["event"]) for m in messages]
    return "\n" + "\n".join(lines)


def _detail(event: dict[str, Any]) -> str:
    """A few identifying fields of an event, for :func:`describe_wire`."""
    keys = ("response_id", "item_id", "audio_end_ms")
    fields = {key: event[key] for key in keys if key in event}
    if event["type"] == "response.done":
        fields["status"] = event["response"].get("status")
    if event["type"] == "error":
        fields["error"] = event.get("error")
    return f" {fields}" if fields else ""


async def start_relay(relay_factory: Any) -> TestServer:
    # Token mode lets no other origin read its answers unless told: the page's port is
    # only known later, so any origin here.
    server: TestServer = await relay_factory(relay_api_keys=(SERVER_KEY,), cors_origins=("*",))
    return server


async def wire(page: Any) -> list[dict[str, Any]]:
    """Every data channel message so far: ``{"dir": "in" | "out", "at": ms, "event"}``."""
    messages: list[dict[str, Any]] = await page.evaluate("window.agentTest.wire")
    return messages


def received(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["event"] for m in messages if m["dir"] == "in"]


def sent(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["event"] for m in messages if m["dir"] == "out"]


async def wait_for_wire(page: Any, predicate: str, arg: Any = None,
                        timeout: float = 15) -> None:
    """Wait until ``predicate`` (a JS function of the wire list and ``arg``) holds."""
    await page.wait_for_function(
        f"arg => ({predicate})(window.agentTest.wire, arg)", arg=arg,
        timeout=timeout * 1000, polling=20,
    )


async def wait_for_received(page: Any, *types: str, after: int = 0,
                            timeout: float = 15) -> None:
    """Wait until an event of each of ``types`` has come in at a wire index >= ``after``."""
    await wait_for_wire(
        page, "(wire, {types, after}) => types.every(t => wire.some("
              "(m, i) => i >= after && m.dir === 'in' && m.event.type === t))",
        {"types": list(types), "after": after}, timeout)


async def wait_until_no_calls(relay: TestServer, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while live_calls(relay):
        assert asyncio.get_running_loop().time() < deadline, "the relay kept the call"
        await asyncio.sleep(0.05)


async def close_session(page: Any, relay: TestServer) -> None:
    """``session.close()``: the transport says disconnected and the relay ends the call."""
    await page.evaluate("window.agentSession.close()")
    states = await page.evaluate("window.agentTest.states")
    assert states == ["connecting", "connected", "disconnected"], states
    await wait_until_no_calls(relay)


async def assert_sdk_understood_everything(page: Any) -> None:
    """Every event the relay sent reached the SDK, and each of a type the SDK has a
    schema for passed that schema (it would otherwise be dropped as "generic")."""
    state = await page.evaluate(
        "({events: window.agentTest.events.map(e => e.type), typed: window.agentTest.typed,"
        " names: window.agentTest.typedNames, errors: window.agentTest.errors})")
    types = [event["type"] for event in received(await wire(page))]
    assert state["events"] == types
    assert state["typed"] == [t for t in types if t in state["names"]]
    assert "error" not in types
    assert state["errors"] == []


async def assert_session_updates_answered_in_order(page: Any) -> None:
    """Each of the SDK's session.update events got one session.updated, in order, none
    came unasked, and the answer to its first carries what the agent asked for."""
    messages = await wire(page)
    outstanding: list[dict[str, Any]] = []
    answers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for message in messages:
        event = message["event"]
        if message["dir"] == "out" and event["type"] == "session.update":
            outstanding.append(event)
        elif message["dir"] == "in" and event["type"] == "session.updated":
            assert outstanding, "a session.updated nobody asked for"
            answers.append((outstanding.pop(0), event))
    assert outstanding == []
    # The SDK's own two: its full configuration, then tracing once session.created came.
    assert [update["session"].get("tracing") for update, _ in answers] == [None, "auto"]
    session = answers[0][1]["session"]
    assert session["instructions"] == INSTRUCTIONS
    assert [tool["name"] for tool in session["tools"]] == ["get_time"]
    turn = session["audio"]["input"]["turn_detection"]
    assert (turn["type"], turn["silence_duration_ms"]) == ("server_vad", 400)
    assert answers[-1][1]["session"]["tracing"] == "auto"


# ----------------------------------------------------------------- the tests

async def test_agents_js_session_connects_speaks_and_closes(
        relay_factory, agents_js_bundle, looped_speech_mic, tmp_path) -> None:
    relay = await start_relay(relay_factory)
    async with agent_page(relay, agents_js_bundle, looped_speech_mic,
                          tmp_path / "profile") as (page, errors):
        state = await page.evaluate("window.agentTest")
        assert state["states"] == ["connecting", "connected"]
        assert re.fullmatch(r"rtc_\w+", state["callId"]), state["callId"]
        assert live_calls(relay) == 1
        # The preflighted header went out, cross-origin, with the offer that made the call.
        assert state["agentsSdk"] == f"openai-agents-sdk.{pinned_version()}"

        # The first event is session.created, with the session the ek_ key was minted for.
        messages = await wire(page)
        first = received(messages)[0]
        assert first["type"] == "session.created"
        assert state["events"][0]["type"] == "session.created"
        assert first["session"]["instructions"] == INSTRUCTIONS
        assert first["session"]["model"] == state["model"]
        assert [t["name"] for t in first["session"]["tools"]] == ["get_time"]

        # connect() resolved on the relay's answer to its update, not on its 5 s fallback.
        opened_at = next(m["at"] for m in messages if m["dir"] == "out")
        assert state["connectedAt"] - opened_at < SDK_ACK_TIMEOUT_MS - 1000

        # A spoken turn: the parrot's reply plays out and stops.
        await wait_for_received(page, "input_audio_buffer.speech_started", "response.done",
                                "output_audio_buffer.started", "output_audio_buffer.stopped",
                                timeout=20)
        types = [event["type"] for event in received(await wire(page))]
        assert "response.output_audio.delta" not in types
        assert (types.index("output_audio_buffer.started") < types.index("response.done")
                < types.index("output_audio_buffer.stopped"))
        assert await page.evaluate("window.agentTest.maxRemoteLevel") > AUDIBLE
        session_events = await page.evaluate("window.agentTest.session")
        ends = [e["text"] for e in session_events if e["name"] == "agent_end"]
        assert ends and ends[0].startswith("You said something"), ends
        history = [e["items"] for e in session_events if e["name"] == "history_updated"][-1]
        assert [(item["role"], item["status"]) for item in history[:2]] == [
            ("user", "completed"), ("assistant", "completed")], history
        # The SDK's own history holds the reply's transcript, from the parsed items.
        reply = await page.evaluate(
            "window.agentSession.history.find(item => item.role === 'assistant')")
        assert reply["content"][0]["type"] == "output_audio"
        assert reply["content"][0]["transcript"] == ends[0]

        await assert_session_updates_answered_in_order(page)
        await assert_sdk_understood_everything(page)
        await close_session(page, relay)
        assert errors == []


async def test_agents_js_interrupt_retrieve_then_text_message(
        relay_factory, agents_js_bundle, looped_speech_mic, tmp_path) -> None:
    relay = await start_relay(relay_factory)
    async with agent_page(relay, agents_js_bundle, looped_speech_mic,
                          tmp_path / "profile") as (page, errors):
        # Cut the parrot off while its reply (as long as the utterance) is playing, and
        # mute the looped microphone, so that no spoken turn cuts in on what follows.
        await wait_for_received(page, "output_audio_buffer.started", timeout=20)
        mark = len(await wire(page))
        await page.evaluate("window.agentSession.interrupt(); window.agentSession.mute(true)")
        await wait_for_received(page, "output_audio_buffer.cleared", after=mark, timeout=5)
        after = (await wire(page))[mark:]
        cleared = next(i for i, m in enumerate(after)
                       if m["event"]["type"] == "output_audio_buffer.cleared")
        out = [event["type"] for event in sent(after[:cleared])]
        assert out in (["output_audio_buffer.clear"],
                       ["response.cancel", "output_audio_buffer.clear"]), out
        assert "output_audio_buffer.stopped" not in [
            event["type"] for event in received(after[:cleared])]

        # The relay truncated the item to what was heard; the SDK asks for that item on
        # its own, and the answer must not cost the call.
        await wait_for_wire(
            page, "wire => wire.some(m => m.dir === 'out'"
                  " && m.event.type === 'conversation.item.retrieve')", timeout=5)
        messages = await wire(page)
        truncated = next(event for event in received(messages)
                         if event["type"] == "conversation.item.truncated")
        retrieve = next(event for event in sent(messages)
                        if event["type"] == "conversation.item.retrieve")
        assert retrieve["item_id"] == truncated["item_id"]
        assert truncated["audio_end_ms"] > 0
        await wait_for_wire(
            page, "(wire, id) => wire.some(m => m.dir === 'in'"
                  " && m.event.type === 'conversation.item.retrieved' && m.event.item.id === id)",
            truncated["item_id"], timeout=5)

        # The call still works: a text message gets a complete reply that plays out.
        mark = len(await wire(page))
        await page.evaluate("window.agentSession.sendMessage('hello')")
        await wait_for_wire(
            page, "(wire, after) => wire.some((m, i) => i >= after && m.dir === 'in'"
                  " && m.event.type === 'response.done'"
                  " && wire.some((s, j) => j > i && s.event.type === 'output_audio_buffer.stopped'"
                  " && s.event.response_id === m.event.response.id))", mark, timeout=15)
        after = (await wire(page))[mark:]
        # agents-js also retrieves each item whose input transcription completes (the
        # embedded server transcribes when the speech extra is installed): not part of
        # the text message's own exchange.
        assert [event["type"] for event in sent(after)
                if event["type"] != "conversation.item.retrieve"] == [
            "conversation.item.create", "response.create"]
        added = next(event for event in received(after)
                     if event["type"] == "conversation.item.added")
        assert added["item"]["role"] == "user"
        assert added["item"]["content"][0]["text"] == "hello"
        done = next(event for event in received(after) if event["type"] == "response.done")
        assert done["response"]["status"] == "completed"

        await assert_sdk_understood_everything(page)
        await close_session(page, relay)
        assert errors == []
