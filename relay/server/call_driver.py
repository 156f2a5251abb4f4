"""One live call's driver: the I/O around its protocol core.

:class:`CallDriver` feeds the call's protocol core (a
:class:`~relay.protocol.call_protocol.CallProtocol`, such as the Realtime
:class:`~relay.protocol.realtime.call_core.CallCore`) what arrives — upstream messages,
data-channel messages, the peer's audio from its :class:`~relay.webrtc.call_media.CallMedia`
— and sends what the core wants sent. It owns every resource of the call — the peer
connection, its media and data channel, the upstream socket (from an injected
:class:`~relay.upstream.client.UpstreamConnector`) and the tasks that move data between
them, and whatever runs beside the call (its server-side agent, :meth:`CallDriver.run_beside`)
— and releases all of them in :meth:`CallDriver.close`, which is safe to call more than once
and from any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSCloseCode, web
from aiortc import RTCPeerConnection
from aiortc.rtcdatachannel import RTCDataChannel
from websockets.exceptions import ConnectionClosed

from ..audio import RATE
from ..config import FAREWELL_SECONDS, Settings
from ..errors import RateLimited, RelayError
from ..logs import CallLog
from ..protocol.call_protocol import CLIENT, CallProtocol, CoreFactory
from ..protocol.channel import DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.events import dumps, new_event_id
from ..protocol.flood import MessageLimits
from ..protocol.realtime.call_core import CallCore
from ..protocol.realtime.session_config import Session
from ..protocol.redact import Redactor
from ..recording.call_recorder import CallRecorder
from ..upstream.client import UpstreamConnector, UpstreamSocket
from ..webrtc.call_media import CallMedia, MediaOptions
from ..webrtc.internals import bound_inbound_messages, watch_peer_datagrams
from ..webrtc.peer import EVENTS_LABEL, answer, create_peer, remote_max_message_size
from ..webrtc.rtc_stats import rtp_summary
from ..webrtc.udp_ports import UdpPorts
from . import call_view
from .call_records import recording_notice
from .sideband import Sideband

logger = logging.getLogger(__name__)

#: Longest wait for aiortc's statistics (they are local: this is a safety net).
RTP_STATS_TIMEOUT = 1.0
#: Seconds between a call's ``call_duration_exceeded`` error event and its end.
DURATION_NOTICE = 10.0
#: How often a call ended by the relay looks whether its last ``error`` event has left
#: (it waits up to :data:`relay.config.FAREWELL_SECONDS`).
FAREWELL_POLL = 0.02


class CallDriver:
    """A client's WebRTC peer, bridged to one upstream session of the protocol ``core``
    speaks (the Realtime API's unless told)."""

    def __init__(
        self,
        call_id: str,
        settings: Settings,
        session: Session,
        upstream: UpstreamConnector,
        *,
        model: str | None = None,
        on_closed: Callable[[CallDriver], None] | None = None,
        on_started: Callable[[CallDriver], None] | None = None,
        ports: UdpPorts | None = None,
        core: CoreFactory | None = None,
        recorder: CallRecorder | None = None,
    ) -> None:
        self.id = call_id
        #: Logs lines about this call (its id a field of each).
        self.log = CallLog(logger, call_id)
        self.settings = settings
        loop = asyncio.get_running_loop()
        if core is None:
            core = functools.partial(
                CallCore, sideband_cancel_clears_playout=settings.sideband_cancel_clears_playout)
        self.core: CallProtocol = core(
            call_id,
            session,
            max_playout_samples=int(settings.playout_max_seconds * RATE),
            clock=loop.time,
            policy=settings.policy,
            client_limits=MessageLimits(settings.client_max_message_bytes,
                                        settings.client_message_rate),
            sideband_limits=MessageLimits(settings.sideband_max_message_bytes,
                                          settings.sideband_message_rate),
            # What the relay sends upstream, should the upstream echo it to the client.
            redact=Redactor(settings.upstream_secrets()),
        )
        self.pc: RTCPeerConnection = create_peer(settings.ice_servers)
        #: Records the call (None: not recorded; then nothing on the audio path knows of it).
        self.recorder = recorder
        if recorder is None:
            self.media = CallMedia(media_options(settings), self.core.next_frame,
                                   self._send_uplink, after_frame=self._flush_client)
        else:
            self.media = CallMedia(media_options(settings), self._next_frame_recorded,
                                   self._send_uplink_recorded, after_frame=self._flush_client)
        self.close_reason: str | None = None
        #: Loop-clock times: the offer arrived, the call ended (None: still live).
        self.created_at = loop.time()
        self.created_wall = time.time()
        #: The RTP statistics last read (kept for after the call ends).
        self.rtp: dict[str, Any] | None = None
        self.ended_at: float | None = None
        #: Seconds the upstream WebSocket took to connect, and from the offer to the peer
        #: connection's "connected" (None: not yet, or never).
        self.upstream_connect_seconds: float | None = None
        self.connect_seconds: float | None = None
        self._upstream = upstream
        #: The upstream model asked for (None: the connector's default).
        self.model = model
        self._on_closed = on_closed
        self._on_started = on_started
        self._ports = ports
        self._socket: UpstreamSocket | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._upstream_ready = asyncio.Event()
        self._closing = False
        #: An :meth:`end` is under way (its farewell leaving; close follows).
        self._ending = False
        #: Data-channel messages that could not be sent.
        self.send_failures = 0
        self._sidebands: dict[str, Sideband] = {}
        #: Sidebands attached so far, and those the relay closed for falling too far behind.
        self.sidebands_attached = 0
        self.sidebands_too_slow = 0
        self._closed = asyncio.Event()
        #: Datagrams heard from the peer (media, RTCP, DTLS, SCTP, ICE checks).
        self.heard = 0
        self._watching = False
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)
        # pyee turns exceptions in handlers into "error" events; never lose them silently.
        self.pc.on("error", self._on_emitter_error)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed.is_set()

    @property
    def closing(self) -> bool:
        """True from the moment :meth:`close` begins."""
        return self._closing

    @property
    def recorded(self) -> bool:
        """Whether the call is recorded."""
        return self.recorder is not None

    @property
    def session(self) -> Session:
        """The call's effective session, as the upstream last described it."""
        return self.core.session

    @property
    def peer_state(self) -> str:
        """The peer connection's state (``connectionState``)."""
        state: str = self.pc.connectionState
        return state

    @property
    def sidebands_live(self) -> int:
        """How many sidebands are attached now."""
        return len(self._sidebands)

    @property
    def upstream_open(self) -> bool:
        """True while the call holds an open upstream session (the upstream is reachable)."""
        return self._socket is not None and not self._closing

    async def start(self, offer_sdp: str, *, dcid: int | None = None) -> str:
        """Connect upstream, answer the offer, and return the SDP answer.

        On any failure the call is closed before the exception propagates.
        """
        try:
            intent = self.core.upstream_intent
            if intent is not None:
                self._socket = await self._upstream.connect(intent=intent)
            else:
                self._socket = await self._upstream.connect(self.model)
            self.upstream_connect_seconds = asyncio.get_running_loop().time() - self.created_at
            self.core.start()
            self._spawn(self._read_upstream(), "upstream-reader")
            self._spawn(self._write_upstream(), "upstream-writer")
            self._upstream_ready.set()
            self.media.attach(self.pc)
            sdp, channel = await answer(
                self.pc, offer_sdp, addresses=self.settings.ice_addresses,
                negotiated_channel_id=dcid, ports=self._ports,
                public_addresses=self.settings.ice_public_addresses,
            )
            if channel is not None:
                self._attach_channel(channel)
            # A data-channel message over the limit is dropped as its fragments arrive
            # (and answered message_too_large), not reassembled first.
            bound_inbound_messages(self.pc, self.settings.client_max_message_bytes)
            # Media first: its inline RTP path must be under the datagram hook.
            self.media.start(self.pc, self.id)
            watch_peer_datagrams(self.pc, self._hear)
            self._spawn(self._connect_deadline(), "connect-deadline")
            self._spawn(self._duration_deadline(), "duration-deadline")
            if self.recorder is not None:
                self.core.notify_client(recording_notice(self.id, self.recorder.protocol,
                                                         new_event_id()))
            if self._on_started is not None:
                self._on_started(self)
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
        self.log.info("closing (%s)", reason)
        await self._read_rtp()  # while the peer connection still has them
        self._flush_client()
        await asyncio.gather(*(sideband.close(WSCloseCode.OK, f"call ended: {reason}")
                               for sideband in list(self._sidebands.values())))
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.media.close()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self.ended_at = asyncio.get_running_loop().time()
        self._closed.set()
        stats = self.stats()
        self.log.info("closed; %d frames out (%d with audio), %.1f s uplink, "
                      "barge-ins %s", stats["frames_out"], stats["audio_frames_out"],
                      stats["uplink_seconds_in"], stats["barge_ins"])
        if self._on_closed is not None:
            self._on_closed(self)

    async def end(self, error: RelayError, reason: str,
                  grace: float = FAREWELL_SECONDS) -> None:
        """Tell the client and every sideband ``error`` (an ``error`` event), give it up to
        ``grace`` seconds to leave, then :meth:`close` the call with ``reason``."""
        if not self._closing:
            self.report_error(error)
        await self.finish(reason, grace)

    async def finish(self, reason: str, grace: float = FAREWELL_SECONDS) -> None:
        """Send what the core has queued for the client and the sidebands (a protocol's
        last words, fed to the core by the caller), give it up to ``grace`` seconds to
        leave, then :meth:`close` the call with ``reason``."""
        if not self._closing:
            self._flush_client()
            for _ in range(max(1, round(grace / FAREWELL_POLL))):
                if self._farewell_sent():
                    break
                await asyncio.sleep(FAREWELL_POLL)
        await self.close(reason)

    def _farewell_sent(self) -> bool:
        channel = self._channel
        unsent = channel is not None and channel.readyState == "open" and (
            channel.bufferedAmount > 0)
        return not unsent and not any(s.pending for s in self._sidebands.values())

    def stats(self) -> dict[str, Any]:
        """A snapshot of the call's counters, for logs, tests and the benchmark."""
        return call_view.counters(self)

    async def describe(self) -> dict[str, Any]:
        """The call as ``GET /v1/realtime/calls/{id}`` shows it, RTP statistics fresh."""
        if not self._closing:
            await self._read_rtp()
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The call as the API shows it (:func:`relay.server.call_view.snapshot`), RTP
        statistics as last read."""
        return call_view.snapshot(self)

    async def _read_rtp(self) -> None:
        # Read even once the peer has closed or failed (a browser's pc.close()): aiortc's
        # senders and receivers keep their counters until the relay closes its side, and
        # the call's record must hold its last figures, not those of the last GET.
        if self.connect_seconds is None:
            return  # never connected: no RTP
        try:
            self.rtp = await asyncio.wait_for(rtp_summary(self.pc), RTP_STATS_TIMEOUT)
        except Exception:
            self.log.debug("reading RTP statistics failed", exc_info=True)

    async def serve_sideband(self, ws: web.WebSocketResponse) -> None:
        """Run one sideband (an upgraded ``GET /v1/realtime?call_id=``) until it or the
        call closes; a sideband closing never ends the call."""
        if self._closing:
            await ws.close(code=WSCloseCode.OK, message=b"call ended")
            return
        self.sidebands_attached += 1
        name = f"sideband-{self.sidebands_attached}"
        sideband = Sideband(name, ws, call_id=self.id,
                            max_outbox=self.settings.sideband_max_events)
        self.core.attach_sideband(name)
        self._sidebands[name] = sideband
        self.log.info("%s attached", name)

        def on_message(message: str | bytes) -> None:
            self._client_message(message, name)

        try:
            await sideband.run(on_message)
        finally:
            self.core.detach_sideband(name)
            self._sidebands.pop(name, None)
            if sideband.closed_by_relay is not None:
                self.sidebands_too_slow += 1
            self.log.info("%s detached", name)

    # ----------------------------------------------------------- companions

    def run_beside(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` (a server-side agent) for as long as the call lives: it is
        cancelled and awaited when the call closes, and if it fails, that is logged and
        the call goes on."""
        if self._closing:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._companion_done)

    def hold_client_events(self) -> None:
        """Hold the client's data-channel events until a controller configures the
        session (see :meth:`CallCore.hold_client_events`)."""
        self.core.hold_client_events()

    def release_client_events(self) -> None:
        """Handle the client's held events now, and hold no more."""
        self.core.release_client_events()
        self._kick()

    def report_error(self, error: RelayError) -> None:
        """Tell the client (and every sideband) about ``error`` with an ``error`` event."""
        self.core.relay_error(error)
        self._flush_client()

    def _companion_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("%s failed", task.get_name(),
                           exc_info=task.exception())

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task %s failed", task.get_name(),
                           exc_info=task.exception())
            self._end_soon(RelayError("The relay had an internal error; the call is ended.",
                                      code="internal_error"), "internal error")

    def _client_message(self, message: str | bytes, source: str) -> None:
        """A data-channel (``source`` CLIENT) or sideband message, into the core. Whatever
        a client sends, the core answers with ``error`` events; an exception here is the
        relay's bug, so it is logged, answered ``internal_error``, and the call goes on
        (it runs inside aiortc's SCTP loop or the sideband's reader, which must not die)."""
        try:
            if self.recorder is not None:
                if source == CLIENT:
                    self.recorder.event("client_to_relay", message)
                else:
                    self.recorder.event("sideband_to_relay", message, source)
            self.core.client_message(message, source)
        except Exception:
            self.log.exception("handling a %s message failed",
                               "data-channel" if source == CLIENT else source)
            self.core.relay_error(RelayError(
                f"The relay failed to handle a message from {source}; it was dropped.",
                code="internal_error"))
        self._after_message()

    def _after_message(self) -> None:
        self._kick()
        if self.core.end_reason is not None:
            self._end_soon(RateLimited(f"The call is ended: {self.core.end_reason} "
                                       "(messages sent too fast for too long)."),
                           self.core.end_reason)

    async def _duration_deadline(self) -> None:
        # Warn a little before the end, so the client can tell its user why the call ended.
        total = self.settings.max_call_seconds
        notice = min(DURATION_NOTICE, total / 2)
        await asyncio.sleep(total - notice)
        self.core.relay_error(RelayError(
            f"The call reached its longest duration ({total:g} s) and ends in {notice:g} s.",
            code="call_duration_exceeded"))
        self._kick()
        await asyncio.sleep(notice)
        self._close_soon("the call reached its longest duration")

    def _end_soon(self, error: RelayError, reason: str) -> None:
        """:meth:`end` the call from synchronous code: the client and the sidebands are
        told ``error`` first."""
        if not self._closing and not self._ending:
            self._ending = True
            # Not owned by the call's task set: close() cancels that set.
            asyncio.get_running_loop().create_task(self.end(error, reason))

    def _close_soon(self, reason: str) -> None:
        if not self._closing:
            # Not owned by the call's task set: close() cancels that set.
            asyncio.get_running_loop().create_task(self.close(reason))

    async def _read_upstream(self) -> None:
        assert self._socket is not None
        try:
            async for message in self._socket:
                if self.recorder is not None:
                    self.recorder.event("upstream_to_relay", message)
                self.core.upstream_message(message)
                self._kick()
        except ConnectionClosed:
            pass
        self.core.upstream_closed(self._socket.close_code, self._socket.close_reason or "")
        self._flush_client()
        self._close_soon("upstream closed")

    async def _write_upstream(self) -> None:
        assert self._socket is not None
        try:
            while True:
                await self._upstream_ready.wait()
                self._upstream_ready.clear()
                for event in self.core.drain_upstream():
                    if self.recorder is not None:
                        self.recorder.event("relay_to_upstream", event)
                    await self._socket.send(dumps(event))
        except ConnectionClosed:
            # The upstream hung up: the reader tells the client and ends the call. (The
            # exception would carry the upstream's close reason into the log.)
            pass

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(self.settings.connect_timeout)
        if self.pc.connectionState != "connected":
            self._close_soon("peer did not connect in time")

    def _hear(self) -> None:
        self.heard += 1

    async def _watch_peer(self) -> None:
        """End the call once the connected peer has sent nothing for ``peer_timeout``.

        A live peer is never quiet for long: a browser sends RTP every 20 ms while it has a
        track (a disabled one included: Chromium's longest gap then was 0.26 s); with its
        sender's track removed it still sends ICE checks and RTCP. Measured on Chromium
        (headless, 25 s with no track), the longest gap between two datagrams was 2.7 s: it
        checks the selected pair about every 2.5 s. A peer that follows RFC 7675 alone may
        wait up to 6 s between consent checks. The default, 8 s, is above both, and still
        ends an abandoned upstream session well before aioice's consent expiry (30 s).
        """
        loop = asyncio.get_running_loop()
        timeout = self.settings.peer_timeout
        # The poll's period bounds how late past the timeout the call ends.
        period = min(0.25, timeout / 4)
        heard, since = self.heard, loop.time()
        if heard == 0:
            # Connected means DTLS went through: the hook must have heard it.
            self.log.error("nothing heard from a connected peer; the datagram hook "
                           "is not working, so dead peers go unnoticed")
            return
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            if self.heard != heard:
                heard, since = self.heard, now
            elif now - since >= timeout:
                self._close_soon(f"peer went silent: nothing heard for {now - since:.1f} s "
                                 "(no media, RTCP or ICE checks)")
                return

    # ----------------------------------------------------------- peer events

    def _send_uplink(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.core.uplink_audio(chunk)
        self._upstream_ready.set()

    # A recorded call's audio paths (an unrecorded call's media never calls these).

    def _send_uplink_recorded(self, chunks: list[bytes]) -> None:
        assert self.recorder is not None
        self.recorder.uplink(chunks)
        self._send_uplink(chunks)

    def _next_frame_recorded(self) -> bytes:
        assert self.recorder is not None
        pcm = self.core.next_frame()
        self.recorder.downlink(pcm)
        return pcm

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label == EVENTS_LABEL and self._channel is None:
            self._attach_channel(channel)
        else:
            self.log.info("ignoring data channel %r", channel.label)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self._client_message(message, CLIENT)

        # pyee hands a handler's exception to "error" listeners, and with none raises it
        # into aiortc's SCTP loop, which ends the call: never let one get there.
        channel.on("error", self._on_emitter_error)
        if channel.readyState == "open":
            self._on_channel_open()
        else:
            channel.on("open", self._on_channel_open)

    def _on_channel_open(self) -> None:
        self.core.channel_opened(remote_max_message_size(self.pc, DEFAULT_MAX_MESSAGE_SIZE))
        self._flush_client()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        self.log.info("peer connection %s", state)
        if state == "connected" and self.connect_seconds is None:
            self.connect_seconds = asyncio.get_running_loop().time() - self.created_at
        if state == "connected" and not self._watching and not self._closing:
            self._watching = True
            self._spawn(self._watch_peer(), "peer-watch")
        if state in ("failed", "closed"):
            self._close_soon(f"peer connection {state}")

    def _on_emitter_error(self, exc: BaseException) -> None:
        self.log.error("error in an event handler", exc_info=exc)

    # --------------------------------------------------------------- outputs

    def _kick(self) -> None:
        self._flush_client()
        if self.core.upstream_pending:
            self._upstream_ready.set()

    def _flush_client(self) -> None:
        for name, sideband in self._sidebands.items():
            events = self.core.drain_sideband(name)
            if events:
                sideband.offer(events)
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        for message in self.core.drain_client_messages():
            if self.recorder is not None:
                self.recorder.event("relay_to_client", message)
            try:
                channel.send(message)
            except Exception:
                # It runs in the upstream reader and in aiortc's sender loop: a failure
                # here must cost one message, never the call (nor its audio).
                self.send_failures += 1
                if self.send_failures == 1:
                    self.log.exception("sending on the data channel failed")


def media_options(settings: Settings) -> MediaOptions:
    """What a call's media takes from the relay's settings."""
    return MediaOptions(settings.uplink_chunk_ms, settings.uplink_reorder_ms,
                        settings.opus_bitrate, settings.opus_complexity,
                        settings.opus_application)
