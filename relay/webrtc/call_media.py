"""One call's media pipeline on its peer connection: the paced outbound track and its
encoder, and the inbound audio path (the RTP tap, or aiortc's track as a fallback).

The call driver holds one :class:`CallMedia`. It gives it where the assistant's audio
comes from (a 20 ms frame source) and where the microphone's goes (24 kHz mono PCM16
chunks), and the media decides the rest from what was negotiated: Opus peers get packets
the track encodes itself, G.711/G.722 peers get frames aiortc encodes; the peer's packets
are decoded by :class:`~relay.audio.inbound_audio.InboundAudio` through the RTP tap, or, where
the installed aiortc has no jitter buffer to tap, read from its decoded track.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from ..audio.encode import OpusEncoder
from ..audio.inbound_audio import InboundAudio
from .internals import (
    InlineRtp,
    InlineSend,
    PacedRtp,
    negotiated_audio_codecs,
    pace_rtp,
    receive_rtp_inline,
    send_rtp_inline,
)
from .packet_tap import tap_audio
from .tracks import PlayoutTrack, pump_inbound

logger = logging.getLogger(__name__)

#: Takes the uplink chunks (24 kHz mono PCM16) that became ready, in order; never empty.
UplinkSink = Callable[[list[bytes]], None]


@dataclass(frozen=True)
class MediaOptions:
    """What a call's media needs of the relay's settings (``RELAY_UPLINK_*``, ``RELAY_OPUS_*``)."""

    #: Milliseconds of microphone audio per uplink chunk.
    uplink_chunk_ms: int
    #: How long a gap in the peer's packets waits for late ones before it is concealed.
    uplink_reorder_ms: int
    #: The Opus the relay sends: bitrate (bit/s), complexity (0-10), libopus application.
    opus_bitrate: int
    opus_complexity: int
    opus_application: str


class CallMedia:
    """The audio both ways of one peer connection, and its counters."""

    def __init__(
        self,
        options: MediaOptions,
        source: Callable[[], bytes],
        on_uplink: UplinkSink,
        *,
        after_frame: Callable[[], None] | None = None,
    ) -> None:
        self.options = options
        #: The outbound track: ``source``'s 20 ms frames, paced in real time.
        self.track = PlayoutTrack(source, after=after_frame)
        self.inbound = InboundAudio(options.uplink_chunk_ms, options.uplink_reorder_ms)
        #: True when the peer's packets come through the RTP tap (not aiortc's track).
        self.tapped = False
        #: The inline receive path's counters (None: the packets go through aiortc's queue).
        self.inline: InlineRtp | None = None
        #: The inline send path's counters (None: packets go through aiortc's coroutines).
        self.inline_send: InlineSend | None = None
        #: The paced sender's counters (None: aiortc's sender loop sends the track).
        self.paced: PacedRtp | None = None
        self._on_uplink = on_uplink
        self._remote_track: MediaStreamTrack | None = None
        self._pump: asyncio.Task[None] | None = None
        #: Wakes the inbound decoder when a gap's reorder window ends with nothing arriving.
        self._gap_timer: asyncio.TimerHandle | None = None

    def attach(self, pc: RTCPeerConnection) -> None:
        """Add the outbound track to ``pc`` and watch for the peer's; before the answer."""
        pc.addTrack(self.track)
        pc.on("track", self._on_track)

    def start(self, pc: RTCPeerConnection, call_id: str) -> None:
        """Once the answer is made: pick the encoder and start taking the peer's audio."""
        codecs = negotiated_audio_codecs(pc)
        if next(iter(codecs.values()), None) == "audio/opus":
            options = self.options
            self.track.encode_opus(OpusEncoder(options.opus_bitrate, options.opus_complexity,
                                               options.opus_application))
        self.inbound.set_codecs(codecs)
        self.inline_send = send_rtp_inline(pc)
        if self.inline_send is not None and self.track.encodes_opus:
            # One timer callback per frame instead of aiortc's loop (see internals).
            sender = next(s for s in pc.getSenders() if s.track is self.track)
            self.paced = pace_rtp(sender, self.track)
        self.tapped = tap_audio(pc, self._on_packet)
        if self.tapped:
            # Only with the tap: then the receiver's path never waits (see internals).
            self.inline = receive_rtp_inline(pc)
        if not self.tapped and self._remote_track is not None:
            # Fallback: aiortc decodes (through its jitter buffer) and we read its track.
            self._pump = asyncio.get_running_loop().create_task(
                pump_inbound(self._remote_track, self._on_frame), name=f"{call_id}:uplink")

    async def close(self) -> None:
        """Stop the outbound track and the fallback reader; safe to call twice."""
        self.track.stop()
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        self.inbound.close()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None

    def stats(self) -> dict[str, Any]:
        """The media's counters, for the call's stats."""
        inbound = self.inbound.stats
        encoder = self.track.encoder_stats
        return {
            "uplink_seconds_in": self.inbound.uplink.seconds_in,
            "uplink_samples_out": self.inbound.uplink.samples_out,
            "uplink_tapped": self.tapped,
            "uplink_inline": self.inline.packets if self.inline is not None else None,
            "uplink_packets": inbound.packets,
            "uplink_decoded": inbound.decoded,
            "uplink_lost": inbound.lost,
            "uplink_recovered": inbound.recovered,
            "uplink_concealed": inbound.concealed,
            "uplink_late": inbound.late,
            "uplink_undecodable": inbound.undecodable,
            "track_reanchors": self.track.reanchors,
            "frames_encoded": encoder.encoded if encoder is not None else None,
            "downlink_paced": (self.paced.packets if self.paced is not None
                               and self.paced.running else None),
        }

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._remote_track = track

    def _on_packet(self, payload_type: int, sequence: int, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        chunks = self.inbound.packet(payload_type, sequence, payload, loop.time())
        if chunks:
            self._on_uplink(chunks)
        self._arm_gap_timer(loop)

    def _arm_gap_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        # On a clean link nothing is held: no timer at all.
        deadline = self.inbound.deadline
        timer = self._gap_timer
        if timer is not None and (deadline is None or timer.when() != deadline):
            timer.cancel()
            self._gap_timer = timer = None
        if deadline is not None and timer is None:
            self._gap_timer = loop.call_at(deadline, self._on_gap_deadline, loop)

    def _on_gap_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        self._gap_timer = None
        chunks = self.inbound.expire(loop.time())
        if chunks:
            self._on_uplink(chunks)
        self._arm_gap_timer(loop)

    def _on_frame(self, frame: av.AudioFrame) -> None:
        chunks = self.inbound.uplink.feed(frame)
        if chunks:
            self._on_uplink(chunks)
