"""A headless WebRTC client of the Realtime calls API, as a browser or SDK would be.

It creates a call (``POST /v1/realtime/calls``), streams a microphone track, opens the
``oai-events`` channel, collects every server event and the reply audio it hears. The
``relay call`` command and the end-to-end tests use it; it works against any server that
speaks the calls API.

Against a relay it also survives a change of network: with ``auto_resume`` on, once nothing
has come from the server for ``resume_after`` seconds (the relay sends RTP every 20 ms, so
its path is gone), it builds a new peer connection, on ``resume_addresses`` when given, and
resumes the call there with the call's resume token (:meth:`CallClient.resume`); the
server's ``relay.call.resumed`` event then arrives first on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from ..audio.resample import Uplink
from ..protocol.events import Event, dumps
from ..webrtc.internals import watch_peer_datagrams
from ..webrtc.peer import EVENTS_LABEL, create_peer
from ..webrtc.tracks import pump_inbound
from .handshake import CallCreationFailed, create_call, hang_up, resume_call

logger = logging.getLogger(__name__)

#: Seconds without a datagram from the server after which an auto-resuming client
#: takes its path for lost, and how often it looks.
RESUME_AFTER = 1.0
RESUME_POLL = 0.1
#: Mean absolute sample value above which a received 20 ms frame counts as audio (not
#: silence) in :attr:`CallClient.audio_times`.
AUDIO_LEVEL = 64


class CallClient:
    """One call to a relay (or to any server of the Realtime calls API).

    The microphone track is added when the client is built, so ``pc``'s transceiver (and
    its receiver) exist before :meth:`connect`.
    """

    def __init__(
        self,
        base_url: str,
        source: MediaStreamTrack,
        *,
        api_key: str | None = None,
        session: dict[str, Any] | None = None,
        ice_addresses: Sequence[str] = (),
        ice_servers: Sequence[str] = (),
        negotiated_dcid: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        edit_offer: Callable[[str], str] | None = None,
        edit_answer: Callable[[str], str] | None = None,
        codecs: Sequence[str] = (),
        auto_resume: bool = False,
        resume_after: float = RESUME_AFTER,
        resume_addresses: Sequence[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.source = source
        self.api_key = api_key
        self.session = session
        self.ice_addresses = tuple(ice_addresses)
        self.negotiated_dcid = negotiated_dcid
        self.on_event = on_event
        #: Rewrites the offer before it is posted (tests use it to mimic other clients).
        self.edit_offer = edit_offer
        #: Rewrites the answer before it is applied (tests route media through a proxy).
        self.edit_answer = edit_answer
        #: Audio codecs to offer, by MIME type (e.g. ``("audio/PCMU",)``); empty: aiortc's.
        self.codecs = tuple(codecs)
        self.ice_servers = tuple(ice_servers)
        #: Resume by itself when the server goes quiet (see the module's docstring).
        self.auto_resume = auto_resume
        self.resume_after = resume_after
        #: Host addresses for a resumed peer connection (None: as the first one's).
        self.resume_addresses = (None if resume_addresses is None
                                 else tuple(resume_addresses))
        self.call_id: str | None = None
        #: The call's resume token, from the server's answer (None: it gave none).
        self.resume_token: str | None = None
        #: ``time.monotonic()`` of each resume: when it began and when its channel opened.
        self.resumes: list[tuple[float, float]] = []
        #: When each received 20 ms frame that carried sound (not silence) arrived (kept
        #: with ``auto_resume`` only: it measures the gap of a handover).
        self.audio_times: list[float] = []
        self._heard_at = time.monotonic()
        #: Every server event received, in order, with the time it arrived
        #: (``time.monotonic()``).
        self.events: list[tuple[float, Event]] = []
        #: Reply audio heard, 24 kHz mono PCM16.
        self.received = bytearray()
        self._uplink = Uplink(20)
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self._resuming: asyncio.Lock = asyncio.Lock()
        self.pc, self.channel = self._new_peer()

    def _new_peer(self) -> tuple[RTCPeerConnection, RTCDataChannel]:
        """A peer connection with the microphone track and the ``oai-events`` channel."""
        pc = create_peer(self.ice_servers)
        pc.addTrack(self.source)
        if self.negotiated_dcid is None:
            channel = pc.createDataChannel(EVENTS_LABEL)
        else:
            channel = pc.createDataChannel(EVENTS_LABEL, negotiated=True,
                                           id=self.negotiated_dcid)
        channel.on("message", self._on_message)
        pc.on("track", self._on_track)
        return pc, channel

    async def connect(self, timeout: float = 15.0) -> None:
        """Create the call and wait for the data channel to open.

        Raises :class:`~relay.client.CallCreationFailed` if the server refuses the call.
        """
        self._prefer_codecs(self.pc)
        self._http = aiohttp.ClientSession()
        answer = await create_call(
            self._http, self.base_url, self.pc, ice_addresses=self.ice_addresses,
            api_key=self.api_key, session=self.session, dcid=self.negotiated_dcid,
            edit_offer=self.edit_offer, edit_answer=self.edit_answer,
        )
        self.call_id = answer.call_id
        self.resume_token = answer.resume_token
        watch_peer_datagrams(self.pc, self._hear)
        await self._channel_open(self.channel, timeout)
        if self.auto_resume and self.resume_token is not None:
            self._tasks.append(asyncio.ensure_future(self._watch_path()))

    async def resume(self, timeout: float = 15.0) -> None:
        """Carry the call on a new peer connection (``POST .../resume`` with the call's
        resume token), on :attr:`resume_addresses` when given; the old one is closed.
        Returns once the new data channel is open. Raises
        :class:`~relay.client.CallCreationFailed` if the server refuses."""
        assert self._http is not None and self.call_id is not None
        if self.resume_token is None:
            raise RuntimeError("the server gave no resume token for this call")
        async with self._resuming:
            began = time.monotonic()
            old = self.pc
            pc, channel = self._new_peer()
            self._prefer_codecs(pc)
            addresses = (self.ice_addresses if self.resume_addresses is None
                         else self.resume_addresses)
            # A new connection: the pooled one may be bound to the network that is gone.
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True),
                    timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                await resume_call(http, self.base_url, self.call_id, self.resume_token,
                                  pc, ice_addresses=addresses, dcid=self.negotiated_dcid)
            self.pc, self.channel = pc, channel
            self._heard_at = time.monotonic()
            # Later requests (the hangup) must not reuse a connection of the old network.
            old_http, self._http = self._http, aiohttp.ClientSession()
            await old_http.close()
            watch_peer_datagrams(pc, self._hear)
            with contextlib.suppress(Exception):
                await old.close()
            await self._channel_open(channel, timeout)
            self.resumes.append((began, time.monotonic()))

    async def _channel_open(self, channel: RTCDataChannel, timeout: float) -> None:
        opened = asyncio.Event()
        if channel.readyState == "open":
            opened.set()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), timeout)

    def _hear(self) -> None:
        self._heard_at = time.monotonic()

    async def _watch_path(self) -> None:
        """Resume the call whenever the server has been quiet for ``resume_after``."""
        while True:
            await asyncio.sleep(RESUME_POLL)
            if time.monotonic() - self._heard_at < self.resume_after:
                continue
            if not self.auto_resume:
                return
            try:
                await self.resume()
            except CallCreationFailed as exc:
                if exc.status == 404:
                    return  # the call is over: nothing to resume
                logger.warning("call %s: resume refused (%s); trying again", self.call_id,
                               exc.message)
                self._heard_at = time.monotonic()
            except Exception as exc:
                # Still no path (or the server said no): try again after another quiet spell.
                logger.warning("call %s: resume failed (%s: %s); trying again", self.call_id,
                               type(exc).__name__, exc)
                self._heard_at = time.monotonic()

    def send(self, event: Event) -> None:
        """Send one client event on the data channel."""
        self.channel.send(dumps(event))

    def say(self, text: str) -> None:
        """Type ``text`` as the user would: a user message with an ``input_text`` part,
        then ``response.create``."""
        self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]}})
        self.send({"type": "response.create"})

    async def wait_for(
        self, kind: str, predicate: Callable[[Event], bool] | None = None, *,
        timeout: float = 20.0, after: int = 0,
    ) -> Event:
        """The first event of type ``kind`` (at index ``after`` or later) that matches."""
        async def find() -> Event:
            while True:
                for _, event in self.events[after:]:
                    if event["type"] == kind and (predicate is None or predicate(event)):
                        return event
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
        return await asyncio.wait_for(find(), timeout)

    def types(self) -> list[str]:
        """The types of all events received so far, in order."""
        return [event["type"] for _, event in self.events]

    async def hangup(self) -> int:
        """``POST .../hangup``; return the HTTP status."""
        assert self._http is not None and self.call_id is not None
        self.auto_resume = False
        return await hang_up(self._http, self.base_url, self.call_id, api_key=self.api_key)

    async def close(self) -> None:
        """Close the peer and the HTTP session; safe to call twice."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _prefer_codecs(self, pc: RTCPeerConnection) -> None:
        if not self.codecs:
            return
        wanted = [c.lower() for c in self.codecs]
        available = RTCRtpSender.getCapabilities("audio").codecs
        for transceiver in pc.getTransceivers():
            transceiver.setCodecPreferences(
                [c for c in available if c.mimeType.lower() in wanted])

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.events.append((time.monotonic(), event))
        if self.on_event is not None:
            self.on_event(event)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        def hear(frame: av.AudioFrame) -> None:
            for chunk in self._uplink.feed(frame):
                self.received += chunk
                if self.auto_resume and (
                        np.abs(np.frombuffer(chunk, np.int16)).mean() > AUDIO_LEVEL):
                    self.audio_times.append(time.monotonic())

        await pump_inbound(track, hear)
