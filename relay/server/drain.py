"""Graceful drain: how a relay stops without cutting its calls off mid-sentence.

On SIGTERM (what a Kubernetes rolling update, systemd or a supervisor sends) the relay
stops taking calls: ``POST /v1/realtime/calls`` and client-secret minting answer 503
``relay_draining`` with ``Retry-After`` and ``/readyz`` answers 503 ``draining``, so a load
balancer sends new calls elsewhere. Everything about the calls it has keeps working
(hang-up, ``GET`` of a call, sidebands). Live calls and WebSocket sessions go on until they
end or the drain timeout passes; each one still live then gets an ``error`` event
(``server_shutting_down``) its client can show, and is ended. Only then does the app's
normal cleanup run.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import Draining, ShuttingDown
from .registry import CallRegistry
from .websocket_session import WebSocketSessions

logger = logging.getLogger(__name__)

#: ``Retry-After`` of a draining relay: another relay behind the balancer takes the call
#: now, and this one is gone (or back) within a drain.
DRAIN_RETRY_AFTER = 5

#: What a call still live at the end of the drain hears.
SHUTDOWN_MESSAGE = ("The relay is restarting and has ended this call; start a new call to "
                    "go on.")


class Drain:
    """Whether the relay still takes calls, and the end of its calls once it stops."""

    def __init__(self, timeout: float) -> None:
        #: Seconds live calls may go on once the drain has begun.
        self.timeout = timeout
        self._begun = asyncio.Event()
        self._hurry = asyncio.Event()

    @property
    def draining(self) -> bool:
        """True from the moment the drain begins until the process exits."""
        return self._begun.is_set()

    def begin(self, why: str = "asked to stop") -> None:
        """Stop taking calls. A second call (a second Ctrl-C) cuts the wait for live calls
        short: they are ended at once."""
        if self.draining:
            if not self._hurry.is_set():
                logger.info("%s again: ending the live calls now", why)
                self._hurry.set()
            return
        logger.info("%s: draining, taking no new calls", why)
        self._begun.set()

    def check(self) -> None:
        """Raise :class:`~relay.errors.Draining` once the drain has begun."""
        if self.draining:
            raise Draining("The relay is restarting and takes no new calls; try again.",
                           retry_after=DRAIN_RETRY_AFTER)

    async def begun(self) -> None:
        """Wait until the drain begins."""
        await self._begun.wait()

    async def run(self, registry: CallRegistry, sessions: WebSocketSessions) -> None:
        """Let ``registry``'s live calls and the live WebSocket ``sessions`` go on for up to
        the timeout (or until a second :meth:`begin`), then end each one still live with an
        ``error`` event."""
        if len(registry) or len(sessions):
            logger.info("draining: %d live calls and %d WebSocket sessions have up to %g s "
                        "to end (signal again to end them now)", len(registry),
                        len(sessions), self.timeout)
        async def all_ended() -> None:
            # No call or session can begin during the drain: one wait after the other.
            await registry.wait_empty()
            await sessions.wait_empty()

        waits = [asyncio.ensure_future(all_ended()), asyncio.ensure_future(self._hurry.wait())]
        try:
            await asyncio.wait(waits, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        calls, left = list(registry), list(sessions)
        if calls or left:
            logger.info("drain: ending the %d calls and %d WebSocket sessions still live",
                        len(calls), len(left))
            error = ShuttingDown(SHUTDOWN_MESSAGE)
            await asyncio.gather(*(call.end(error, "relay shutting down") for call in calls),
                                 *(session.end(error, "relay shutting down") for session in left),
                                 return_exceptions=True)
        logger.info("drained: no calls left")
