"""The HTTP side of recordings, shared by every protocol family: who asked for a call to
be recorded, and the download of a recording as a zip.

A call is recorded when the relay records all (``--record all``), or when the operator
asked for it: a client secret minted with ``"record": true``, or ``?record=true`` on a
call a server key creates (a client secret's holder cannot ask on its own). The download
is a follow-up like the others: routed to the relay that owns the call.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import InvalidRequest, RecordingInProgress, RecordingNotFound
from .app_state import AUTH, RECORDS, forward_to_owner
from .auth import credentials
from .requests import record_param


def record_requested(request: web.Request) -> bool:
    """Whether the operator asked for the call ``request`` creates to be recorded."""
    auth = request.app[AUTH]
    authorization = credentials(request.headers)
    if "record" in request.query:
        if not auth.is_server_key(authorization):
            raise InvalidRequest("record= is for server keys; a client secret's calls are "
                                 "recorded when it is minted with \"record\": true.",
                                 code="invalid_value", param="record")
        return record_param(request.query["record"])
    return auth.recording_requested(authorization)


async def recording_content(request: web.Request, call_id: str) -> web.StreamResponse:
    """The recording of ``call_id`` as a zip (``audio.ogg``, ``events.jsonl``,
    ``metadata.json``), for a server key; 404 ``recording_not_found`` when there is none,
    409 ``recording_in_progress`` while the call is live."""
    request.app[AUTH].require_server_key(credentials(request.headers))
    if (routed := await forward_to_owner(request, call_id)) is not None:
        return routed
    recordings = request.app[RECORDS].recordings
    status = recordings.status(call_id)
    if status is None:
        raise RecordingNotFound()
    if status == "recording":
        raise RecordingInProgress()
    body = await recordings.archive(call_id)
    return web.Response(body=body, content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{call_id}.zip"'})
