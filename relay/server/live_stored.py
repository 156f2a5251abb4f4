"""A stored GPT-Live session as a fork starts from: found (the API's error when it cannot
be forked), and its configuration carrying its conversation, read from its recording.
Both forms of fork use it: ``POST /v1/live/sessions/{id}/fork`` (:mod:`.live_api`) and
the WebSocket fork (:mod:`.live_websocket`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from ..errors import CallNotFound, InvalidRequest, LiveSessionNotFound, SessionInProgress
from ..protocol.live.live_core import LiveCore
from ..protocol.live.live_restore import (
    RECORDED_DIRECTIONS,
    RECORDED_TYPES,
    recorded_conversation,
    with_history,
)
from .app_state import RECORDS, REGISTRY
from .call_driver import CallDriver


async def fork_base(request: web.Request, session_id: str) -> tuple[dict[str, Any], int, int]:
    """What a fork of the stored, ended Live session ``session_id`` starts from: its
    configuration as it ended (its creation's, with the last update's ``delegation`` and
    ``triggers``) carrying its conversation, read from its recording, as ``input``
    (:func:`~relay.protocol.live.live_restore.with_history`); and the messages of the
    conversation carried and left out. The API's error when it cannot be forked."""
    stored = await _stored_session(request, session_id)
    recorded = recorded_conversation(await request.app[RECORDS].recordings.events(
        session_id, RECORDED_DIRECTIONS, RECORDED_TYPES))
    return with_history(stored, recorded.session, recorded.history)


async def _stored_session(request: web.Request, session_id: str) -> dict[str, Any]:
    """The configuration the stored, ended Live session ``session_id`` was created with;
    the API's error when it cannot be forked."""
    recordings = request.app[RECORDS].recordings
    status = recordings.status(session_id)
    live: CallDriver | None = None
    with contextlib.suppress(CallNotFound):
        live = request.app[REGISTRY].get(session_id)
    if live is not None:
        if not isinstance(live.core, LiveCore):
            raise LiveSessionNotFound()
        if live.core.requested_session.get("store") is not True:
            raise _not_stored()
        raise SessionInProgress()
    if status is None:
        raise LiveSessionNotFound()
    if status == "recording":
        raise SessionInProgress()
    try:
        metadata = await asyncio.to_thread(recordings.metadata, session_id)
    except (OSError, ValueError) as exc:
        raise LiveSessionNotFound() from exc
    config = metadata.get("requested_session")
    if metadata.get("protocol") != "live" or not isinstance(config, dict):
        raise LiveSessionNotFound()
    if config.get("store") is not True:
        raise _not_stored()
    return config


def _not_stored() -> InvalidRequest:
    return InvalidRequest("The Live session was not stored: only a session created with "
                          "\"store\": true can be forked.", code="session_not_stored",
                          param="session_id")
