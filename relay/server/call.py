"""One live call: the driver that wires a peer connection and an upstream socket to its core.

It owns every resource of the call — the peer connection, its tracks and data channel,
the upstream WebSocket and the tasks that move data between them — and releases all of
them in :meth:`Call.close`, which is safe to call more than once and from any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..audio import RATE
from ..audio.encode import OpusEncoder
from ..audio.inbound import InboundAudio
from ..config import Settings
from ..protocol.call import CallCore
from ..protocol.events import dumps
from ..protocol.session import Session
from ..upstream.client import connect_upstream
from ..webrtc.inbound import tap_audio
from ..webrtc.peer import EVENTS_LABEL, answer, audio_codecs, create_peer, negotiated_codec
from ..webrtc.tracks import PlayoutTrack, pump_inbound

logger = logging.getLogger(__name__)


class Call:
    """A client's WebRTC peer, bridged to one upstream Realtime session."""

    def __init__(
        self,
        call_id: str,
        settings: Settings,
        session: Session,
        *,
        on_closed: Callable[[Call], None] | None = None,
    ) -> None:
        self.id = call_id
        self.settings = settings
        loop = asyncio.get_running_loop()
        self.core = CallCore(
            call_id,
            session,
            max_playout_samples=int(settings.playout_max_seconds * RATE),
            clock=loop.time,
        )
        self.inbound = InboundAudio(settings.uplink_chunk_ms)
        self._remote_track: MediaStreamTrack | None = None
        self._tapped = False
        self.pc: RTCPeerConnection = create_peer(settings.ice_servers)
        self.track = PlayoutTrack(self.core.next_frame, after=self._flush_client)
        self.close_reason: str | None = None
        self._on_closed = on_closed
        self._ws: ClientConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._upstream_ready = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        # pyee turns exceptions in handlers into "error" events; never lose them silently.
        self.pc.on("error", self._on_emitter_error)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed.is_set()

    async def start(
        self, offer_sdp: str, upstream: tuple[str, Mapping[str, str]], *, dcid: int | None = None
    ) -> str:
        """Connect upstream, answer the offer, and return the SDP answer.

        On any failure the call is closed before the exception propagates.
        """
        try:
            self._ws = await connect_upstream(*upstream)
            self.core.start()
            self._spawn(self._read_upstream(), "upstream-reader")
            self._spawn(self._write_upstream(), "upstream-writer")
            self._upstream_ready.set()
            self.pc.addTrack(self.track)
            sdp, channel = await answer(
                self.pc, offer_sdp, addresses=self.settings.ice_addresses,
                negotiated_channel_id=dcid,
            )
            if channel is not None:
                self._attach_channel(channel)
            if negotiated_codec(self.pc) == "audio/opus":
                self.track.encode_opus(OpusEncoder(
                    self.settings.opus_bitrate, self.settings.opus_complexity,
                    self.settings.opus_application))
            self._start_uplink()
            self._spawn(self._connect_deadline(), "connect-deadline")
            return sdp
        except BaseException:
            await self.close("setup failed")
            raise

    async def close(self, reason: str = "closed") -> None:
        """Release everything the call holds; safe to call twice, and from its own tasks."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        logger.info("call %s: closing (%s)", self.id, reason)
        self._flush_client()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.track.stop()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._closed.set()
        stats = self.stats()
        logger.info("call %s: closed; %d frames out (%d with audio), %.1f s uplink, "
                    "barge-ins %s", self.id, stats["frames_out"], stats["audio_frames_out"],
                    stats["uplink_seconds_in"], stats["barge_ins"])
        if self._on_closed is not None:
            self._on_closed(self)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the call's counters, for logs, tests and the benchmark."""
        stats = self.core.stats
        encoder = self.track.encoder_stats
        return {
            "call_id": self.id,
            "uplink_seconds_in": self.inbound.uplink.seconds_in,
            "uplink_samples_out": self.inbound.uplink.samples_out,
            "uplink_samples_sent": stats.uplink_samples,
            "uplink_tapped": self._tapped,
            "uplink_packets": self.inbound.stats.packets,
            "uplink_lost": self.inbound.stats.lost,
            "uplink_late": self.inbound.stats.late,
            "uplink_undecodable": self.inbound.stats.undecodable,
            "frames_out": stats.frames_out,
            "audio_frames_out": stats.audio_frames_out,
            "playout_dropped_samples": self.core.playout.dropped,
            "dropped_deltas": stats.dropped_deltas,
            "track_reanchors": self.track.reanchors,
            "frames_encoded": encoder.encoded if encoder is not None else None,
            "barge_ins": [
                {"reason": b.reason, "response_ids": b.response_ids, "truncated": b.truncated,
                 "deleted": b.deleted, "cut_latency_ms": b.cut_latency_ms}
                for b in stats.barge_ins
            ],
        }

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: task %s failed", self.id, task.get_name(),
                         exc_info=task.exception())
            self._close_soon("internal error")

    def _close_soon(self, reason: str) -> None:
        if not self._closing:
            # Not owned by the call's task set: close() cancels that set.
            asyncio.get_running_loop().create_task(self.close(reason))

    async def _read_upstream(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                self.core.upstream_message(message)
                self._kick()
        except ConnectionClosed:
            pass
        self.core.upstream_closed(self._ws.close_code, self._ws.close_reason or "")
        self._flush_client()
        self._close_soon("upstream closed")

    async def _write_upstream(self) -> None:
        assert self._ws is not None
        while True:
            await self._upstream_ready.wait()
            self._upstream_ready.clear()
            for event in self.core.drain_upstream():
                await self._ws.send(dumps(event))

    def _start_uplink(self) -> None:
        self.inbound.set_codecs(audio_codecs(self.pc))
        self._tapped = tap_audio(self.pc, self._on_uplink_packet)
        if not self._tapped and self._remote_track is not None:
            # Fallback: aiortc decodes (through its jitter buffer) and we read its track.
            self._spawn(pump_inbound(self._remote_track, self._on_uplink_frame), "uplink")

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(self.settings.connect_timeout)
        if self.pc.connectionState != "connected":
            self._close_soon("peer did not connect in time")

    # ----------------------------------------------------------- peer events

    def _on_uplink_packet(self, payload_type: int, sequence: int, payload: bytes) -> None:
        self._send_uplink(self.inbound.packet(payload_type, sequence, payload))

    def _on_uplink_frame(self, frame: av.AudioFrame) -> None:
        self._send_uplink(self.inbound.uplink.feed(frame))

    def _send_uplink(self, chunks: list[bytes]) -> None:
        if chunks:
            for chunk in chunks:
                self.core.uplink_audio(chunk)
            self._upstream_ready.set()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label == EVENTS_LABEL and self._channel is None:
            self._attach_channel(channel)
        else:
            logger.info("call %s: ignoring data channel %r", self.id, channel.label)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self.core.client_message(message)
            self._kick()

        if channel.readyState == "open":
            self._on_channel_open()
        else:
            channel.on("open", self._on_channel_open)

    def _on_channel_open(self) -> None:
        self.core.channel_opened()
        self._flush_client()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._remote_track = track

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("call %s: peer connection %s", self.id, state)
        if state in ("failed", "closed"):
            self._close_soon(f"peer connection {state}")

    def _on_emitter_error(self, exc: BaseException) -> None:
        logger.error("call %s: error in an event handler", self.id, exc_info=exc)

    # --------------------------------------------------------------- outputs

    def _kick(self) -> None:
        self._flush_client()
        if self.core.upstream_pending:
            self._upstream_ready.set()

    def _flush_client(self) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        for event in self.core.drain_client():
            channel.send(dumps(event))
