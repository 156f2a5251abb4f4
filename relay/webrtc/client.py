"""A headless WebRTC client of the Realtime calls API, as a browser or SDK would be.

It creates a call (``POST /v1/realtime/calls``), streams a microphone track, opens the
``oai-events`` channel, collects every server event and the reply audio it hears. The
``relay call`` command and the end-to-end tests use it; it works against any server that
speaks the calls API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import FRAME_BYTES, FRAME_SAMPLES, RATE
from ..audio.encode import pcm_frame
from ..audio.resample import Uplink
from ..protocol.events import Event, dumps
from .internals import wrap_rtp_receive
from .peer import EVENTS_LABEL, create_peer, restrict_host_addresses
from .tracks import pump_inbound

logger = logging.getLogger(__name__)


class PcmSource(MediaStreamTrack):
    """A microphone made of 24 kHz mono PCM16: plays ``pcm`` in real time, then silence.

    More audio can be queued while it plays with :meth:`play`.
    """

    kind = "audio"

    def __init__(self, pcm: bytes = b"") -> None:
        super().__init__()
        self._queue = bytearray(pcm)
        self._index = 0
        self._start: float | None = None

    def play(self, pcm: bytes) -> None:
        """Queue ``pcm`` after what is already queued."""
        self._queue += pcm

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * FRAME_SAMPLES / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = bytes(self._queue[:FRAME_BYTES])
        del self._queue[:FRAME_BYTES]
        frame = pcm_frame(chunk + bytes(FRAME_BYTES - len(chunk)), self._index)
        self._index += 1
        return frame


@dataclass
class RtpArrival:
    """One RTP packet of reply audio as it reached the client, before any jitter buffer."""

    at: float
    sequence: int
    timestamp: int
    payload_type: int
    payload: bytes


class CallClient:
    """One call to a relay (or to any server of the Realtime calls API)."""

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
        codecs: Sequence[str] = (),
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
        #: Audio codecs to offer, by MIME type (e.g. ``("audio/PCMU",)``); empty: aiortc's.
        self.codecs = tuple(codecs)
        self.pc: RTCPeerConnection = create_peer(ice_servers)
        self.call_id: str | None = None
        #: Every server event received, in order, with the loop time it arrived.
        self.events: list[tuple[float, Event]] = []
        #: Reply audio heard, 24 kHz mono PCM16.
        self.received = bytearray()
        #: Every RTP packet of reply audio, timed on arrival (``time.monotonic()``).
        self.rtp: list[RtpArrival] = []
        self._uplink = Uplink(20)
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: aiohttp.ClientSession | None = None
        if negotiated_dcid is None:
            self.channel = self.pc.createDataChannel(EVENTS_LABEL)
        else:
            self.channel = self.pc.createDataChannel(EVENTS_LABEL, negotiated=True,
                                                     id=negotiated_dcid)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def connect(self, timeout: float = 15.0) -> None:
        """Create the call and wait for the data channel to open."""
        self.pc.addTrack(self.source)
        self._record_rtp()
        if self.codecs:
            wanted = [c.lower() for c in self.codecs]
            available = RTCRtpSender.getCapabilities("audio").codecs
            for transceiver in self.pc.getTransceivers():
                transceiver.setCodecPreferences(
                    [c for c in available if c.mimeType.lower() in wanted])
        offer = await self.pc.createOffer()
        restrict_host_addresses(self.pc, self.ice_addresses)
        await self.pc.setLocalDescription(offer)
        self._http = aiohttp.ClientSession()
        url = f"{self.base_url}/v1/realtime/calls"
        if self.negotiated_dcid is not None:
            url += f"?dcid={self.negotiated_dcid}"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        sdp = self.pc.localDescription.sdp
        if self.edit_offer is not None:
            sdp = self.edit_offer(sdp)
        if self.session is not None:
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("sdp", sdp)
            form.add_field("session", json.dumps(self.session))
            response = await self._http.post(url, data=form, headers=headers)
        else:
            response = await self._http.post(
                url, data=sdp, headers={**headers, "Content-Type": "application/sdp"}
            )
        async with response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"call creation failed: {response.status} {body}")
            self.call_id = response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        opened = asyncio.Event()
        if self.channel.readyState == "open":
            opened.set()
        self.channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), timeout)

    def send(self, event: Event) -> None:
        """Send one client event on the data channel."""
        self.channel.send(dumps(event))

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
        async with self._http.post(
            f"{self.base_url}/v1/realtime/calls/{self.call_id}/hangup",
            headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
        ) as response:
            await response.read()
            return response.status

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

    def rtp_levels(self) -> list[tuple[float, float]]:
        """``(arrival time, RMS level)`` of each received Opus packet, decoded in order."""
        decoder = av.CodecContext.create("opus", "r")
        levels = []
        for packet in self.rtp:
            frames = decoder.decode(av.Packet(packet.payload))
            parts = [f.to_ndarray().astype(np.float64).ravel() for f in frames]
            x = np.concatenate(parts) if parts else np.zeros(0)
            if frames and frames[0].format.name.startswith("flt"):
                x *= 32767  # the native decoder gives floats in [-1, 1]
            levels.append((packet.at, float(np.sqrt(np.mean(x**2))) if len(x) else 0.0))
        return levels

    def _record_rtp(self) -> None:
        # Timing decoded frames would include aiortc's jitter buffer (about 80 ms, and it
        # holds a burst's tail), so record each packet as it reaches the receiver.
        def record(packet: Any) -> None:
            self.rtp.append(RtpArrival(time.monotonic(), packet.sequence_number,
                                       packet.timestamp, packet.payload_type,
                                       bytes(packet.payload)))

        for transceiver in self.pc.getTransceivers():
            wrap_rtp_receive(transceiver.receiver, record)

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

        await pump_inbound(track, hear)


def read_wav(path: Path) -> bytes:
    """A WAV file of any rate and channel count as 24 kHz mono PCM16."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = wav.readframes(wav.getnframes())
    samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16",
                                       layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = rate
    uplink = Uplink(20)
    return b"".join(uplink.feed(frame)) + uplink.flush()


def write_wav(path: Path, pcm: bytes) -> None:
    """Write 24 kHz mono PCM16 as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
