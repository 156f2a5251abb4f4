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

The call outlives its transports. A peer connection that fails or goes silent is closed
and the call waits ``resume_grace`` for :meth:`CallDriver.resume` (the client's new peer
connection, with the call's resume token); meanwhile the model's audio is held, not played
into the dead path. An upstream session that closes under the call is replaced within
``upstream_reconnect_seconds`` (or, with ``upstream_session_seconds``, before its limit)
and the core restores the session and conversation on the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSCloseCode, web
from aiortc import RTCPeerConnection
from aiortc.rtcdatachannel import RTCDataChannel

from ..audio import FRAME_BYTES, RATE
from ..base.inline import InlineWriter
from ..config import FAREWELL_SECONDS, Settings
from ..errors import CallNotFound, RateLimited, RelayError
from ..logs import CallLog
from ..protocol.call_protocol import CLIENT, CallProtocol, CoreFactory
from ..protocol.channel import DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.events import dumps, new_event_id
from ..protocol.flood import MessageLimits
from ..protocol.realtime.call_core import CallCore
from ..protocol.realtime.session_config import Session
from ..protocol.redact import Redactor
from ..recording.call_recorder import CallRecorder
from ..upstream.client import UpstreamClosed, UpstreamConnector, UpstreamSocket
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
#: Seconds a peer that was streaming its microphone may go quiet (no datagram at all)
#: before the model's audio is held (a browser sends RTP every 20 ms, its longest gap
#: with a disabled track 0.26 s); and how close to its last datagram its last audio must
#: have come for it to count as streaming (a peer without a microphone, or that removed
#: it, sends only ICE checks and RTCP: its audio is never held).
HOLD_AFTER = 0.5
STREAMING_GAP = 0.25
#: What the outbound track plays while the model's audio is held.
SILENT_FRAME = bytes(FRAME_BYTES)
#: Random bytes in a call's resume token (URL-safe base64 of them: 43 characters).
RESUME_TOKEN_BYTES = 32
#: Seconds before the first attempt to reopen a lost upstream session is retried, and the
#: longest between two attempts (each waits twice the one before).
RECONNECT_FIRST_DELAY = 0.25
RECONNECT_MAX_DELAY = 2.0
#: Longest a planned rollover waits for a moment with no reply in flight, and how often it
#: looks.
ROLLOVER_WAIT = 60.0
ROLLOVER_POLL = 0.1
#: An upstream session that lasted this long before it was lost starts a fresh window of
#: ``upstream_reconnect_seconds``; one lost sooner is part of the same run of failures.
UPSTREAM_STABLE_SECONDS = 30.0
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
        self._clock = loop.time
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
        self.media = self._new_media()
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
        #: When the upstream session was last opened, and when the run of losses being
        #: recovered from began (None: none yet).
        self._upstream_opened_at = 0.0
        self._upstream_lost_since: float | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Writes what the core queues for the upstream, inline in the callback that
        #: queued it (the uplink audio's, every 20 ms): no task wakes per message.
        self._upstream_writer = InlineWriter(self._write_upstream, self._upstream_write_failed,
                                             name=f"{call_id}:upstream-writer")
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
        #: Loop-clock time of the last datagram heard from the peer (None: none yet).
        self.heard_at: float | None = None
        #: When the peer's microphone audio last arrived (None: never), and the frames of
        #: silence sent in place of the model's audio while its path looked gone
        #: (see _next_frame).
        self._audio_at: float | None = None
        self.held_frames = 0
        self._watching = False
        #: What a client presents to resume this call on a new peer connection
        #: (``POST .../resume``); only the response that created the call carries it.
        self.resume_token = secrets.token_urlsafe(RESUME_TOKEN_BYTES)
        #: Peer connections that took over the call (resumes), and the last one's figures.
        self.peer_resumes = 0
        self.last_resume: dict[str, Any] | None = None
        #: When the peer's path was found lost (None: it is up, or the call has not
        #: connected yet), and the task that ends the call if no resume comes in time.
        self._peer_lost_at: float | None = None
        self._grace: asyncio.Task[None] | None = None
        self._swapping = asyncio.Lock()
        #: Set from a resume until the new path's first datagram: the last one heard before.
        self._gap_since: float | None = None
        #: Peer connections the call has left, being closed.
        self._releases: set[asyncio.Task[None]] = set()
        self._wire_peer(self.pc)

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
            self._socket = await self._connect_upstream()
            self._upstream_opened_at = self._clock()
            self.upstream_connect_seconds = self._upstream_opened_at - self.created_at
            self.core.start()
            self._spawn(self._read_upstream(), "upstream-reader")
            self._upstream_writer.kick()
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
            self._spawn(self._connect_deadline(self.pc), "connect-deadline")
            self._spawn(self._duration_deadline(), "duration-deadline")
            if self.settings.upstream_session_seconds is not None:
                self._spawn(self._roll_over(self.settings.upstream_session_seconds),
                            "upstream-rollover")
            if self.recorder is not None:
                self.core.notify_client(recording_notice(self.id, self.recorder.protocol,
                                                         new_event_id()))
            if self._on_started is not None:
                self._on_started(self)
            return sdp
        except BaseException:
            await self.close("setup failed")
            raise

    async def resume(self, offer_sdp: str, *, dcid: int | None = None) -> str:
        """Carry the call on a new peer connection from ``offer_sdp`` (the client's, whose
        path changed, after it showed the call's resume token) and return the SDP answer.

        The upstream session, the conversation and the assistant audio not yet played go
        on; the old peer connection, if still open, is closed. Once the new data channel
        opens the client gets a ``relay.call.resumed`` event first, then the events held
        for it meanwhile. An offer that cannot be answered raises and changes nothing.
        """
        async with self._swapping:
            if self._closing:
                raise CallNotFound()
            loop = asyncio.get_running_loop()
            began = loop.time()
            pc = create_peer(self.settings.ice_servers)
            media = self._new_media()
            media.attach(pc)
            try:
                sdp, channel = await answer(
                    pc, offer_sdp, addresses=self.settings.ice_addresses,
                    negotiated_channel_id=dcid, ports=self._ports,
                    public_addresses=self.settings.ice_public_addresses,
                )
            except BaseException:
                await media.close()
                with contextlib.suppress(Exception):
                    await pc.close()
                raise
            if self._closing:  # it ended while the answer was made
                await media.close()
                await pc.close()
                raise CallNotFound()
            old_pc, old_media = self.pc, self.media
            self.pc, self.media = pc, media
            self._channel = None
            self.core.channel_closed()
            self._wire_peer(pc)
            if channel is not None:
                self._attach_channel(channel)
            bound_inbound_messages(pc, self.settings.client_max_message_bytes)
            # Media first: its inline RTP path must be under the datagram hook.
            media.start(pc, self.id)
            watch_peer_datagrams(pc, self._hear)
            self.peer_resumes += 1
            quiet = None if self.heard_at is None else began - self.heard_at
            self.last_resume = {
                "via": "new_peer_connection",
                "seconds_without_peer": None if quiet is None else round(quiet, 3),
                "assistant_audio_ms_held": self.core.playout.queued * 1000 // RATE,
                "answered_in_seconds": round(loop.time() - began, 3),
            }
            self.core.peer_resumed(dict(self.last_resume, resumes=self.peer_resumes))
            # From the last datagram on the old path to the first on the new one.
            self._gap_since = self.heard_at if self.heard_at is not None else began
            self._peer_lost_at = None
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            self._watching = False
            self._spawn(self._connect_deadline(pc), "resume-connect-deadline")
            self.log.info("resumed on a new peer connection (%s)", self.last_resume)
            self._release_soon(old_pc, old_media)
            return sdp

    def resume_token_matches(self, token: str | None) -> bool:
        """Whether ``token`` is this call's resume token (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode(),
                                                         self.resume_token.encode())

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
        await asyncio.gather(*tasks, self._upstream_writer.close(), return_exceptions=True)
        await asyncio.gather(*self._releases, return_exceptions=True)
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
            self.log.warning("reading RTP statistics failed", exc_info=True)

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

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self._failed(f"task {task.get_name()}", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        """A task or the upstream writer failed: the relay's bug; the call ends with
        ``internal_error``."""
        self.log.error("%s failed", what, exc_info=exc)
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
        while True:
            socket = self._socket
            assert socket is not None
            async for message in socket:  # ends when the session closes, however
                if self.recorder is not None:
                    self.recorder.event("upstream_to_relay", message)
                self.core.upstream_message(message)
                self._kick()
            if self._closing:
                return
            if self._socket is not socket:
                continue  # replaced on purpose (a rollover): read the new one
            if not await self._reopen_upstream(socket):
                self.core.upstream_closed(socket.close_code, socket.close_reason or "")
                self._flush_client()
                self._close_soon("upstream closed")
                return

    async def _connect_upstream(self) -> UpstreamSocket:
        """A new upstream session for the call, as its protocol core asks for one."""
        intent = self.core.upstream_intent
        if intent is not None:
            return await self._upstream.connect(intent=intent)
        return await self._upstream.connect(self.model)

    async def _reopen_upstream(self, lost: UpstreamSocket) -> bool:
        """Open a new upstream session in place of ``lost`` and queue its restore; False
        when none opened within ``upstream_reconnect_seconds`` (or reconnecting is off)."""
        window = self.settings.upstream_reconnect_seconds
        reason = self.core.upstream_lost(lost.close_code) if window > 0 else None
        if reason is None:
            return False
        self.log.warning("upstream session lost (%s); opening a new one", reason)
        self._kick()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._upstream_lost_since is None or (
                now - self._upstream_opened_at >= UPSTREAM_STABLE_SECONDS):
            self._upstream_lost_since = now
        # An upstream that fails again soon after each reopen spends one window, not many.
        deadline = self._upstream_lost_since + window
        delay = RECONNECT_FIRST_DELAY
        while not self._closing and loop.time() < deadline:
            try:
                self._socket = await self._connect_upstream()
            except RelayError as exc:
                self.log.info("new upstream session not opened: %s", exc.message)
            else:
                with contextlib.suppress(Exception):
                    await lost.close()
                self._upstream_opened_at = loop.time()
                self.core.upstream_reopened(reason)
                self._kick()
                return True
            if loop.time() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
        return False

    async def _roll_over(self, seconds: float) -> None:
        """Replace the upstream session before the upstream's own limit ends it: ``seconds``
        after it opened, at the first moment no reply is in flight (or after
        ``ROLLOVER_WAIT`` regardless), open a new one, restore the call on it, and close
        the old one. The client sees one ``relay.upstream.restored``; nothing is lost."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._upstream_opened_at + seconds - loop.time()))
            for _ in range(round(ROLLOVER_WAIT / ROLLOVER_POLL)):
                if self.core.idle:
                    break
                await asyncio.sleep(ROLLOVER_POLL)
            if self.core.upstream_down:
                continue  # being reopened already: the new session starts a new term
            old = self._socket
            try:
                new = await self._connect_upstream()
            except RelayError as exc:
                # The old session goes on; its end, if it comes, is reopened as any loss.
                self.log.warning("upstream rollover failed: %s", exc.message)
                self._upstream_opened_at = loop.time()
                continue
            if self._closing or self.core.upstream_down or old is not self._socket:
                await new.close()
                continue
            if self.core.upstream_lost(None) is None:
                await new.close()  # this protocol's sessions are not rebuilt: none to roll
                return
            self.log.info("rolling the upstream session over after %g s", seconds)
            self._socket = new
            self._upstream_opened_at = loop.time()
            self.core.upstream_reopened("session_rollover")
            self._kick()
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()

    async def _write_upstream(self) -> None:
        """Send the core's events for the upstream to the current session (the call's
        :class:`InlineWriter` runs this, one at a time)."""
        socket = self._socket
        if socket is None or self.core.upstream_down:
            # Not open yet, or the reader is opening a new session: the events stay in
            # the core until it is (then the writer is kicked again).
            return
        try:
            for event in self.core.drain_upstream():
                if self.recorder is not None:
                    self.recorder.event("relay_to_upstream", event)
                await socket.send(dumps(event))
        except UpstreamClosed:
            # The upstream hung up: the reader reopens it or ends the call. (The
            # exception would carry the upstream's close reason into the log.)
            pass

    def _upstream_write_failed(self, exc: Exception) -> None:
        # Never raised into the callback that kicked the writer (the RTP datagram's);
        # the writer writes no more, as its task did once it failed.
        self._failed(f"task {self.id}:upstream-writer", exc)

    async def _connect_deadline(self, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self.settings.connect_timeout)
        if pc is self.pc and pc.connectionState != "connected":
            self._peer_lost("peer did not connect in time")

    def _hear(self) -> None:
        self.heard += 1
        self.heard_at = now = self._clock()
        if self._gap_since is not None:
            self._path_back(now)

    def _next_frame(self) -> bytes:
        """The next 20 ms for the outbound track: the model's audio, unless the path looks
        gone (a peer that was streaming its microphone has sent nothing at all for
        ``HOLD_AFTER``): then silence, and the model's audio stays queued until the path is
        back, the same peer's or a resumed one's (it is not played into a dead path)."""
        heard_at, audio_at = self.heard_at, self._audio_at
        if (heard_at is not None and audio_at is not None
                and heard_at - audio_at < STREAMING_GAP
                and self._clock() - heard_at > HOLD_AFTER):
            self.held_frames += 1
            return SILENT_FRAME
        return self.core.next_frame()

    def _path_back(self, now: float) -> None:
        """The first datagram on a resumed peer connection's path: the gap is over."""
        since, self._gap_since = self._gap_since, None
        if since is not None and self.last_resume is not None:
            self.last_resume["path_gap_seconds"] = round(now - since, 3)
            self.log.info("path back after a gap of %.3f s", now - since)

    def _peer_lost(self, reason: str) -> None:
        """The current peer connection is gone (failed, silent, never connected): end the
        call, or, when it had connected and ``resume_grace`` allows, close that peer and
        wait that long for the client to resume the call on a new one."""
        if self._closing or self._peer_lost_at is not None:
            return
        grace = self.settings.resume_grace
        if grace <= 0 or self.connect_seconds is None:
            self._close_soon(reason)
            return
        self._peer_lost_at = self._clock()
        self.log.info("%s; waiting up to %g s for the client to resume the call", reason, grace)
        self._channel = None
        self.core.channel_closed()
        self._release_soon(self.pc, self.media)
        self._grace = self._spawn(self._resume_deadline(reason, grace), "resume-grace")

    def _release_soon(self, pc: RTCPeerConnection, media: CallMedia) -> None:
        """Close a peer connection the call has left, in a task :meth:`close` awaits but
        never cancels (aiortc's ``close()`` cut short leaves a second one waiting forever).
        The model's audio stays queued while no track pulls it (the README's rule)."""
        async def release() -> None:
            await media.close()
            with contextlib.suppress(Exception):
                await pc.close()

        task = asyncio.get_running_loop().create_task(release(), name=f"{self.id}:release")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _resume_deadline(self, reason: str, grace: float) -> None:
        await asyncio.sleep(grace)
        if self._peer_lost_at is not None:
            self._close_soon(f"{reason}; no resume within {grace:g} s")

    async def _watch_peer(self, pc: RTCPeerConnection) -> None:
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
        while pc is self.pc:
            await asyncio.sleep(period)
            now = loop.time()
            if self.heard != heard:
                heard, since = self.heard, now
            elif now - since >= timeout and pc is self.pc:
                self._peer_lost(f"peer went silent: nothing heard for {now - since:.1f} s "
                                "(no media, RTCP or ICE checks)")
                return

    # ----------------------------------------------------------- peer events

    def _send_uplink(self, chunks: list[bytes]) -> None:
        self._audio_at = self._clock()
        for chunk in chunks:
            self.core.uplink_audio(chunk)
        self._upstream_writer.kick()

    # A recorded call's audio paths (an unrecorded call's media never calls these).

    def _send_uplink_recorded(self, chunks: list[bytes]) -> None:
        assert self.recorder is not None
        self.recorder.uplink(chunks)
        self._send_uplink(chunks)

    def _next_frame_recorded(self) -> bytes:
        assert self.recorder is not None
        pcm = self._next_frame()
        self.recorder.downlink(pcm)
        return pcm

    def _new_media(self) -> CallMedia:
        """The media of a peer connection of the call (its first, or a resumed one)."""
        if self.recorder is None:
            return CallMedia(media_options(self.settings), self._next_frame,
                             self._send_uplink, after_frame=self._flush_client)
        return CallMedia(media_options(self.settings), self._next_frame_recorded,
                         self._send_uplink_recorded, after_frame=self._flush_client)

    def _wire_peer(self, pc: RTCPeerConnection) -> None:
        pc.on("datachannel", lambda channel: self._on_datachannel(pc, channel))
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        # pyee turns exceptions in handlers into "error" events; never lose them silently.
        pc.on("error", self._on_emitter_error)

    def _on_datachannel(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        if pc is not self.pc:
            return  # a peer connection the call has left
        if channel.label == EVENTS_LABEL and self._channel is None:
            self._attach_channel(channel)
        else:
            self.log.info("ignoring data channel %r", channel.label)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if channel is not self._channel:
                return  # a channel of a peer connection the call has left
            self._client_message(message, CLIENT)

        # pyee hands a handler's exception to "error" listeners, and with none raises it
        # into aiortc's SCTP loop, which ends the call: never let one get there.
        channel.on("error", self._on_emitter_error)
        if channel.readyState == "open":
            self._on_channel_open(channel)
        else:
            channel.on("open", lambda: self._on_channel_open(channel))

    def _on_channel_open(self, channel: RTCDataChannel) -> None:
        if channel is not self._channel:
            return
        self.core.channel_opened(remote_max_message_size(self.pc, DEFAULT_MAX_MESSAGE_SIZE))
        self._flush_client()

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc or self._peer_lost_at is not None:
            return  # a peer connection the call has left (being closed)
        state = pc.connectionState
        self.log.info("peer connection %s", state)
        if state == "connected" and self.connect_seconds is None:
            self.connect_seconds = self._clock() - self.created_at
        if state == "connected" and not self._watching and not self._closing:
            self._watching = True
            self._spawn(self._watch_peer(pc), "peer-watch")
        if state == "closed":
            # The peer said goodbye (DTLS close_notify): it meant to end the call.
            self._close_soon("peer connection closed")
        elif state == "failed":
            # Its path failed (a changed network): the client may resume the call.
            self._peer_lost("peer connection failed")

    def _on_emitter_error(self, exc: BaseException) -> None:
        self.log.error("error in an event handler", exc_info=exc)

    # --------------------------------------------------------------- outputs

    def _kick(self) -> None:
        self._flush_client()
        if self.core.upstream_pending:
            self._upstream_writer.kick()

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
