"""Server-side agents: an OpenAI Agents SDK ``RealtimeAgent`` served on every call.

``relay serve --agent module:attr`` (``RELAY_AGENT``) names either a ``RealtimeAgent``,
served as it is on every call, or a factory called with the call's id and session (the
session the call was created with) that returns one, directly or as an awaitable. The name
is resolved once, at startup (:func:`load_agent`); the Agents SDK, the ``relay[agents]``
extra, is imported only then.

For each call, once it is created (its 201 does not wait), :class:`CallAgents` runs one
``RealtimeRunner(agent).run(model_config=...)`` session in the relay's own process,
attached to the call like any controller: through the sideband
``ws://<the address the call came in on>/v1/realtime?call_id=<id>``, with the server key
when ``RELAY_API_KEYS`` is set. Tools, handoffs and guardrails run here; the audio stays on
the call, which is the relay's to play and to cut.

- Until the agent's first ``session.update`` has gone upstream, the client's data-channel
  events wait (at most ``RELAY_AGENT_START_TIMEOUT``), so the client's first words reach a
  model that already has the agent's tools and instructions. Its audio never waits.
- The agent's session keeps the call's own audio settings (turn detection, voice,
  transcription) and output modalities, which the SDK would replace with its defaults.
- An agent that fails — its factory raises or returns something else, it cannot attach,
  it does not start in time, or its session raises (as it does when a tool declared with
  ``failure_error_function=None`` raises) — is logged with the call's id and reported to
  the client as an ``error`` event with code ``agent_error``; the call and its audio go on
  without it. A factory must not block: make it ``async`` if it does I/O.
- Closing the call closes the agent's sideband, then cancels and awaits its task.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from ..config import Settings
from ..errors import AgentFailed, ConfigError
from ..logs import CallLog
from ..protocol.realtime.session_config import Session

if TYPE_CHECKING:
    from agents.realtime import (
        RealtimeAgent,
        RealtimeModelConfig,
        RealtimeSession,
        RealtimeSessionModelSettings,
    )

    from .call_driver import CallDriver

logger = logging.getLogger(__name__)

#: How to get the Agents SDK, for messages.
INSTALL_HINT = "pip install 'relay[agents]'"
#: Fields of a call's session its agent keeps (the SDK would otherwise send its defaults).
KEPT_SESSION_FIELDS = ("audio", "output_modalities")


@dataclass(frozen=True)
class AgentSource:
    """What ``--agent`` names, resolved: an agent for every call, or a factory of them."""

    spec: str
    #: A ``RealtimeAgent``, or a callable ``(call_id, session)`` returning one (or an
    #: awaitable of one).
    target: Any

    async def agent_for(self, call_id: str, session: Session) -> RealtimeAgent[Any]:
        """The agent for the call ``call_id``; :class:`AgentFailed` if a factory returns
        anything but a ``RealtimeAgent``."""
        from agents.realtime import RealtimeAgent

        if isinstance(self.target, RealtimeAgent):
            return self.target
        made = self.target(call_id, copy.deepcopy(session))
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, RealtimeAgent):
            raise AgentFailed(f"{self.spec} returned a {type(made).__name__}, "
                              "not a RealtimeAgent")
        return made


def load_agent(spec: str) -> AgentSource:
    """Import the Agents SDK and resolve ``spec`` (``module:attr``, the attribute may be
    dotted) to an agent or a factory; :class:`ConfigError` for anything that cannot work.

    The module is imported as ``python -m`` would from the current directory, which is
    put first on ``sys.path`` when it is missing (the ``relay`` console script leaves it
    out), so a project's own modules can be named.
    """
    where = Settings.names("agent")
    try:
        from agents.realtime import RealtimeAgent
    except ImportError as exc:
        raise ConfigError(f"{where} needs the OpenAI Agents SDK, which is not installed: "
                          f"{INSTALL_HINT}", param="agent") from exc
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{where} must be module:attribute, not {spec!r}", param="agent")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # not found, or the module itself failed
        raise ConfigError(f"{where}: cannot import {module_name} "
                          f"({type(exc).__name__}: {exc})", param="agent") from exc
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError as exc:
            raise ConfigError(f"{where}: {module_name} has no attribute {attribute}",
                              param="agent") from exc
    if not isinstance(target, RealtimeAgent) and not callable(target):
        raise ConfigError(f"{where}: {spec} is a {type(target).__name__}; name a "
                          "RealtimeAgent or a factory (call_id, session) that returns one",
                          param="agent")
    return AgentSource(spec, target)


def loopback_base(sockname: object, settings: Settings) -> str:
    """``ws://host:port`` at which the relay reaches itself: the local address a request
    came in on (``sockname``, as the transport reports it), else the configured listen
    address with a wildcard host made loopback."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
    else:
        host, port = settings.host, settings.port
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


def sideband_url(base: str, call_id: str) -> str:
    """The sideband URL of the call ``call_id`` on the relay at ``base``."""
    return f"{base}/v1/realtime?call_id={quote(call_id, safe='')}"


def model_settings(session: Session) -> dict[str, Any]:
    """The agent's initial model settings: the call's audio settings and modalities."""
    return {name: copy.deepcopy(session[name]) for name in KEPT_SESSION_FIELDS
            if name in session}


class CallAgents:
    """Serves one agent source on every call of a relay."""

    def __init__(self, source: AgentSource, *, server_key: str | None,
                 start_timeout: float) -> None:
        self.source = source
        self.start_timeout = start_timeout
        #: The sideband's headers: the server key when the relay has keys, else none (an
        #: explicit empty dict also keeps the SDK from sending an OpenAI key of its own).
        self._headers = {"Authorization": f"Bearer {server_key}"} if server_key else {}

    def serve(self, call: CallDriver, base: str) -> None:
        """Start the agent of ``call`` (just created, on the relay at ``base``) beside it;
        the client's events wait until the agent has configured the call."""
        call.hold_client_events()
        call.run_beside(self._run(call, sideband_url(base, call.id)), "agent")

    async def _run(self, call: CallDriver, url: str) -> None:
        try:
            async with asyncio.timeout(self.start_timeout) as deadline:
                session = await self._start(call, url)
        except Exception as exc:
            late = isinstance(exc, TimeoutError) and deadline.expired()
            self._failed(call, f"did not start within {self.start_timeout:g} s" if late
                         else "could not start", None if late else exc)
            return
        CallLog(logger, call.id).info("agent %s attached", self.source.spec)
        try:
            await self._follow(call, session)
        except Exception as exc:
            self._failed(call, "stopped", exc)
        finally:
            await session.close()

    async def _start(self, call: CallDriver, url: str) -> RealtimeSession:
        from agents.realtime import RealtimeRunner

        agent = await self.source.agent_for(call.id, call.core.requested_session)
        settings = cast("RealtimeSessionModelSettings",
                        model_settings(call.core.requested_session))
        config: RealtimeModelConfig = {"url": url, "headers": dict(self._headers),
                                       "call_id": call.id, "initial_model_settings": settings}
        session = await RealtimeRunner(agent).run(model_config=config)
        # Connects and sends the agent's session.update, which releases the client's events.
        await session.enter()
        return session

    async def _follow(self, call: CallDriver, session: RealtimeSession) -> None:
        """Let the agent work until its session ends; raises what the session raises."""
        async for event in session:
            if event.type == "error":
                CallLog(logger, call.id).warning("agent error: %s", event.error)
        if not call.closing:
            CallLog(logger, call.id).info("agent session ended")

    def _failed(self, call: CallDriver, what: str, exc: BaseException | None) -> None:
        call.release_client_events()
        if call.closing:  # the call ended under it: nothing went wrong
            return
        CallLog(logger, call.id).error("agent %s %s; the call goes on without it",
                                       self.source.spec, what, exc_info=exc)
        cause = f" ({type(exc).__name__})" if exc is not None else ""
        call.report_error(AgentFailed(f"The call's agent {what}{cause}; the call goes on "
                                      "without it."))
