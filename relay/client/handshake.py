"""The calls API handshake from the client's side: post an SDP offer, take the answer.

``POST /v1/realtime/calls`` takes the offer as ``application/sdp``, or as a multipart form
with ``sdp`` and ``session`` fields; it answers 201 with the SDP answer as the body and the
call's URL in ``Location``. ``POST /v1/realtime/calls/{id}/hangup`` ends the call. A relay
also gives out a resume token with the call (``X-Relay-Resume-Token``), with which
``POST .../{id}/resume`` carries the call on a new peer connection after the client's
network changed.
:class:`~relay.client.CallClient` and the benchmark's load both create calls here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from yarl import URL

from ..errors import RelayError
from ..webrtc.peer import restrict_host_addresses

CALLS_PATH = "/v1/realtime/calls"
#: The header a relay gives a call's resume token in, and takes it back in on a resume.
RESUME_TOKEN_HEADER = "X-Relay-Resume-Token"
#: How much of a non-JSON error body goes into the error message.
BODY_EXCERPT = 200


class CallCreationFailed(RelayError, RuntimeError):
    """The server did not create the call: it answered something other than 201 (or a 201
    without the call's URL).

    It carries the server's status and, when the body has the API's JSON error shape, its
    ``type``, ``code``, ``param`` and message. It is also a :class:`RuntimeError`, which is
    what callers of the client have always caught.
    """

    def __init__(self, status: int, message: str, *, error_type: str | None = None,
                 code: str | None = None, param: str | None = None) -> None:
        detail = f"{code}: {message}" if code else message
        super().__init__(f"call creation failed: HTTP {status} {detail}", code=code,
                         param=param)
        self.status = status
        self.type = error_type or self.type
        #: The server's own message (``message`` is this error's whole sentence).
        self.server_message = message


class CallAnswer(NamedTuple):
    """What a successful ``POST /v1/realtime/calls`` returned."""

    call_id: str
    sdp: str
    #: The relay's resume token for the call (None: the server gave none).
    resume_token: str | None = None


async def create_call(
    http: aiohttp.ClientSession,
    base_url: str,
    pc: RTCPeerConnection,
    *,
    ice_addresses: Sequence[str] = (),
    api_key: str | None = None,
    session: Mapping[str, Any] | None = None,
    dcid: int | None = None,
    edit_offer: Callable[[str], str] | None = None,
    edit_answer: Callable[[str], str] | None = None,
) -> CallAnswer:
    """Offer ``pc`` (its tracks and channels already added) to the server and apply the
    answer; return the call id and the answer.

    Host candidates are gathered on ``ice_addresses`` only when given. ``edit_offer``
    rewrites the SDP before it is posted (tests use it to mimic other clients), and
    ``edit_answer`` the answer before it is applied (tests route media through a proxy).
    Raises :class:`CallCreationFailed` when the server answers anything but 201.
    """
    offer = await pc.createOffer()
    restrict_host_addresses(pc, ice_addresses)
    await pc.setLocalDescription(offer)
    sdp = pc.localDescription.sdp
    if edit_offer is not None:
        sdp = edit_offer(sdp)
    answer = await post_offer(http, base_url, sdp, api_key=api_key, session=session,
                              dcid=dcid)
    applied = edit_answer(answer.sdp) if edit_answer is not None else answer.sdp
    await pc.setRemoteDescription(RTCSessionDescription(sdp=applied, type="answer"))
    return answer


async def post_offer(
    http: aiohttp.ClientSession,
    base_url: str,
    offer_sdp: str,
    *,
    api_key: str | None = None,
    session: Mapping[str, Any] | None = None,
    dcid: int | None = None,
) -> CallAnswer:
    """``POST /v1/realtime/calls`` with ``offer_sdp``: raw SDP, or a multipart form when a
    ``session`` goes with it. Raises :class:`CallCreationFailed` unless the server answers 201."""
    url = base_url.rstrip("/") + CALLS_PATH
    if dcid is not None:
        url += f"?dcid={dcid}"
    headers = _auth(api_key)
    data: aiohttp.FormData | str
    if session is not None:
        data = aiohttp.FormData(default_to_multipart=True)
        data.add_field("sdp", offer_sdp)
        data.add_field("session", json.dumps(session))
    else:
        data = offer_sdp
        headers["Content-Type"] = "application/sdp"
    async with http.post(url, data=data, headers=headers) as response:
        body = await response.text()
        if response.status != 201:
            raise rejection(response.status, body)
        location = response.headers.get("Location")
        token = response.headers.get(RESUME_TOKEN_HEADER)
    if not location:
        raise CallCreationFailed(201, "the answer has no Location header")
    return CallAnswer(call_id_from_location(location), body, token)


async def resume_call(
    http: aiohttp.ClientSession,
    base_url: str,
    call_id: str,
    resume_token: str,
    pc: RTCPeerConnection,
    *,
    ice_addresses: Sequence[str] = (),
    dcid: int | None = None,
) -> None:
    """Offer the new peer connection ``pc`` (tracks and channel added) to carry the call
    ``call_id`` on (``POST .../{id}/resume`` with its ``resume_token``), and apply the
    answer. Raises :class:`CallCreationFailed` (with the server's status and code) unless
    the server answers 201."""
    offer = await pc.createOffer()
    restrict_host_addresses(pc, ice_addresses)
    await pc.setLocalDescription(offer)
    url = f"{base_url.rstrip('/')}{CALLS_PATH}/{call_id}/resume"
    if dcid is not None:
        url += f"?dcid={dcid}"
    headers = {"Content-Type": "application/sdp", RESUME_TOKEN_HEADER: resume_token}
    async with http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
        body = await response.text()
        if response.status != 201:
            raise rejection(response.status, body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))


async def hang_up(http: aiohttp.ClientSession, base_url: str, call_id: str, *,
                  api_key: str | None = None) -> int:
    """``POST /v1/realtime/calls/{call_id}/hangup``; return the HTTP status."""
    url = f"{base_url.rstrip('/')}{CALLS_PATH}/{call_id}/hangup"
    async with http.post(url, headers=_auth(api_key)) as response:
        await response.read()
        return response.status


def call_id_from_location(location: str) -> str:
    """The call id: the last path segment of a ``Location`` (a path or an absolute URL,
    with or without a trailing slash, query or fragment)."""
    call_id = URL(location).path.rstrip("/").rsplit("/", 1)[-1]
    if not call_id:
        raise CallCreationFailed(201, f"no call id in Location {location!r}")
    return call_id


def rejection(status: int, body: str) -> CallCreationFailed:
    """The error for a non-201 answer: the API's JSON error fields when the body has them,
    else the start of the body."""
    try:
        error = json.loads(body)["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        return CallCreationFailed(status, body.strip()[:BODY_EXCERPT] or "(empty body)")
    return CallCreationFailed(status, str(message), error_type=error.get("type"),
                        code=error.get("code"), param=error.get("param"))


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
