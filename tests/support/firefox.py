"""A headless Firefox ESR (Debian's ``firefox-esr``) driven over WebDriver BiDi, the W3C
protocol Firefox serves itself (``--remote-debugging-port``): no driver binary and no
browser build of Playwright's own, just a WebSocket.

Its fake media (``media.navigator.streams.fake``) gives ``getUserMedia`` a microphone
that plays a tone, with no permission prompt. WebRTC is Firefox's own: its ICE, NSS for
DTLS, its SDP. Host addresses are not hidden behind mDNS names. Firefox gathers no
candidate on loopback, and none at all in a namespace without a default route: a test
gives it an interface and a default route with :func:`lab_interface`.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from .netlab import NetLab
from .processes import stop

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
needs_firefox = pytest.mark.skipif(FIREFOX is None, reason="needs Debian's firefox-esr")

PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,
    "remote.active-protocols": 1,  # WebDriver BiDi only
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
}
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
PEERS_SCRIPT = """() => {
  const Original = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__peers.push(this); }
  };
}"""
#: The wire :func:`lab_interface` makes: this namespace's side, and the far side.
HERE, THERE = "10.201.9.1", "10.201.9.2"


def lab_interface(netlab: NetLab) -> str:
    """An address of this namespace on a lab wire, with the default route through the
    wire's far side (a namespace of nothing: no traffic goes anywhere), so Firefox has an
    interface to gather a candidate on. The route goes with the wire when the lab closes."""
    netlab.namespace("firefox-wire", HERE, THERE)
    subprocess.run(["ip", "route", "add", "default", "via", THERE], check=True,
                   capture_output=True, timeout=20)
    return HERE


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


class Firefox:
    """One headless Firefox and one BiDi session on its first tab."""

    def __init__(self, profile: Path, start_timeout: float = 60.0) -> None:
        self.profile = profile
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._context: str | None = None
        self._next_id = 0
        #: Errors the page threw (log.entryAdded of level error), for the test to check.
        self.errors: list[str] = []

    async def __aenter__(self) -> Firefox:
        assert FIREFOX is not None
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "user.js").write_text("".join(
            f'user_pref("{name}", {json.dumps(value)});\n' for name, value in PREFS.items()))
        log = self.profile / "stderr.log"
        self._process = self._launch(log)
        try:
            url = await self._listening(log)
            self._ws = await websockets.connect(f"{url}/session", max_size=None)
            await self.call("session.new", {"capabilities": {}})
            await self.call("session.subscribe", {"events": ["log.entryAdded"]})
            # Every peer connection a page makes, kept where a test can read its getStats()
            # (Firefox's Web Audio may not run headless: the page's own meters can stay 0).
            await self.call("script.addPreloadScript", {"functionDeclaration": PEERS_SCRIPT})
            tree = await self.call("browsingContext.getTree", {})
            self._context = tree["contexts"][0]["context"]
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """End the session and the browser (by its PID); safe to call twice."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            try:
                await asyncio.wait_for(self.call_on(ws, "browser.close", {}), 5)
            except Exception:
                pass
            await ws.close()
        if self._process is not None:
            process, self._process = self._process, None
            await asyncio.to_thread(stop, process)

    def _launch(self, log: Path) -> subprocess.Popen[bytes]:
        assert FIREFOX is not None
        with log.open("wb") as sink:
            return subprocess.Popen(
                [FIREFOX, "--headless", "--no-remote", "--remote-debugging-port=0",
                 "--profile", str(self.profile)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink,
                env={"PATH": "/usr/bin:/bin", "HOME": str(self.profile),
                     "MOZ_CRASHREPORTER_DISABLE": "1"})

    async def _listening(self, log: Path) -> str:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = _read(log)
            found = LISTENING.search(text)
            if found:
                return found.group(1)
            assert self._process is not None and self._process.poll() is None, text[-2000:]
            await asyncio.sleep(0.1)
        raise TimeoutError("firefox did not start its WebDriver BiDi server")

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one BiDi command; its result, or AssertionError with the error."""
        return await self.call_on(self._ws, method, params)

    async def call_on(self, ws: Any, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        command_id = self._next_id
        await ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "event":
                self._event(message)
            elif message.get("id") == command_id:
                assert message.get("type") == "success", message
                return message["result"]

    def _event(self, message: dict[str, Any]) -> None:
        if message.get("method") == "log.entryAdded":
            entry = message["params"]
            if entry.get("level") == "error":
                self.errors.append(str(entry.get("text")))

    async def goto(self, url: str) -> None:
        """Load ``url`` in the tab and wait for it to finish loading."""
        await self.call("browsingContext.navigate",
                        {"context": self._context, "url": url, "wait": "complete"})

    async def evaluate(self, expression: str, *, user_activation: bool = False) -> Any:
        """The JSON value of ``expression`` in the page (awaited if it is a promise)."""
        result = await self.call("script.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "target": {"context": self._context}, "awaitPromise": True,
            "userActivation": user_activation})
        assert result["type"] == "success", result
        value = result["result"]
        return None if value["type"] == "undefined" else json.loads(value["value"])

    async def rtp_audio(self) -> dict[str, float]:
        """The audio RTP of the page's last peer connection, from its getStats():
        packets and energy received and decoded, packets sent."""
        stats: dict[str, float] = await self.evaluate("""(async () => {
          const pc = window.__peers[window.__peers.length - 1];
          const out = {packetsReceived: 0, totalAudioEnergy: 0, packetsSent: 0};
          (await pc.getStats()).forEach((s) => {
            if (s.kind !== "audio") return;
            if (s.type === "inbound-rtp") {
              out.packetsReceived = s.packetsReceived || 0;
              out.totalAudioEnergy = s.totalAudioEnergy || 0;
            } else if (s.type === "outbound-rtp") {
              out.packetsSent = s.packetsSent || 0;
            }
          });
          return out;
        })()""")
        return stats

    async def wait_for(self, expression: str, timeout: float = 25.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout} s")
            await asyncio.sleep(0.05)
