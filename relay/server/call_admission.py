"""Letting a new call in, for every protocol family's create handler: who asks (its key,
and the session a client secret seals), whether the relay takes calls now and this caller
may create one, and the call's registration under its key's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..protocol.call_protocol import CoreFactory
from ..protocol.realtime.session_config import Session
from ..upstream.client import UpstreamConnector
from .app_state import AUTH, DRAIN, NODE, REGISTRY
from .auth import credentials
from .call_driver import CallDriver


@dataclass(frozen=True)
class Caller:
    """Who asks to create a call."""

    #: The session its client secret was minted with (None: another key).
    sealed: Session | None
    #: Its client secret's id, which its limits count calls against (None: another key).
    key: str | None


async def admit_caller(request: web.Request) -> Caller:
    """The caller of a create ``request``, once its key is accepted, the relay is not
    draining and the caller is within its rate of new calls."""
    app = request.app
    authorization = credentials(request.headers)
    caller = Caller(app[AUTH].authorize_call(authorization),
                    app[AUTH].client_secret_id(authorization))
    app[DRAIN].check()
    await app[NODE].limits.admit(request.remote, caller.key)
    return caller


async def register_call(request: web.Request, caller: Caller, session: dict[str, Any],
                        upstream: UpstreamConnector, model: str | None, *, record: bool,
                        core: CoreFactory | None = None,
                        protocol: str = "realtime") -> CallDriver:
    """A new call for ``caller``, held against its key's limits and registered (see
    :meth:`~.registry.CallRegistry.new`); the hold is let go if the call is not made."""
    app = request.app
    call_id = app[NODE].new_call_id()
    await app[NODE].limits.hold(caller.key, call_id)
    try:
        return app[REGISTRY].new(session, upstream, model, call_id=call_id, core=core,
                                 record=record, protocol=protocol)
    except BaseException:
        app[NODE].limits.release_soon(call_id)
        raise
