"""The two baseline echo servers the relay is measured against.

- ``bare``: the remote audio track is added straight back to the peer, so aiortc sends
  the decoded frames as they come out of its Opus decoder.
- ``rightsized``: each decoded frame is copied into a frame of exactly its 20 ms. aiortc's
  decoder hands out frames whose buffer has room for 120 ms, and the sender's pure-Python
  audio-level loop (``rtp.compute_audio_level_dbov``) walks the whole buffer; the copy
  cuts that loop to a sixth.

Both speak the relay's call interface: ``POST /v1/realtime/calls`` (SDP offer in, 201 with
the answer and ``Location``), ``POST /v1/realtime/calls/{id}/hangup``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from relay.webrtc.peer import restrict_host_addresses

logger = logging.getLogger(__name__)

MODES = ("bare", "rightsized")
CALLS = web.AppKey("calls", dict[str, RTCPeerConnection])
MODE = web.AppKey("mode", str)
ICE_ADDRESS = web.AppKey("ice_address", str)


class RightSizedEcho(MediaStreamTrack):
    """Echo a remote audio track, copying each frame into a buffer of its own size."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self._source = source

    async def recv(self) -> av.AudioFrame:
        frame = await self._source.recv()
        assert isinstance(frame, av.AudioFrame)
        copy = av.AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        copy.sample_rate = frame.sample_rate
        copy.pts = frame.pts
        copy.time_base = frame.time_base
        return copy


async def create_call(request: web.Request) -> web.Response:
    """Answer an SDP offer with an echoing peer."""
    offer = await request.text()
    mode = request.app[MODE]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    call_id = "rtc_bench_" + secrets.token_hex(8)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            pc.addTrack(track if mode == "bare" else RightSizedEcho(track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await close_call(request.app, call_id)

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        restrict_host_addresses(pc, [request.app[ICE_ADDRESS]])
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        await pc.close()
        raise web.HTTPBadRequest(text=f"bad offer: {exc}") from exc
    request.app[CALLS][call_id] = pc
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call_id}"},
    )


async def close_call(app: web.Application, call_id: str) -> bool:
    """Close and forget a call; False if it was unknown (safe to call twice)."""
    pc = app[CALLS].pop(call_id, None)
    if pc is None:
        return False
    await pc.close()
    return True


async def hangup(request: web.Request) -> web.Response:
    """End a call."""
    if not await close_call(request.app, request.match_info["call_id"]):
        raise web.HTTPNotFound(text="No session found for the provided call_id")
    return web.Response(status=200)


async def on_shutdown(app: web.Application) -> None:
    """Close every call still open."""
    calls = app[CALLS]
    await asyncio.gather(*(close_call(app, call_id) for call_id in list(calls.keys())))


def create_app(mode: str, ice_address: str = "127.0.0.1") -> web.Application:
    """Build a baseline echo server app (``mode``: bare or rightsized)."""
    if mode not in MODES:
        raise ValueError(f"unknown baseline {mode!r}; choose from {MODES}")
    app = web.Application()
    calls: dict[str, RTCPeerConnection] = {}
    app[CALLS] = calls
    app[MODE] = mode
    app[ICE_ADDRESS] = ice_address
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup)
    app.on_shutdown.append(on_shutdown)
    return app


def serve(mode: str, host: str, port: int) -> None:
    """Run a baseline server until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    web.run_app(create_app(mode, host), host=host, port=port, print=None)
