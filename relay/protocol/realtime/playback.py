"""Playing the assistant's audio out to the peer, and cutting it off (barge-in).

:class:`Playback` follows each response's audio from its deltas to the frames the
outbound track pulls; it makes the ``output_audio_buffer.*`` events only WebRTC has, and
on an interruption it flushes playout and tells the upstream exactly how much of each
item the user heard: ``conversation.item.truncate`` at the audio actually sent (floored
to the ms), or ``conversation.item.delete`` for an item nothing of which was played. It
emits through two callbacks the call core gives it, so it decides nothing about routing.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ...audio import FRAME_SECONDS, RATE
from ...audio.playout import ItemPlayback, Playout
from ...logs import CallLog
from ..call_measures import CallStats, Truncation
from ..events import Event, new_event_id

logger = logging.getLogger(__name__)

_SAMPLES_PER_MS = RATE // 1000


@dataclass
class ResponsePlayback:
    """Playout state of one response's audio."""

    response_id: str
    items: list[ItemPlayback] = field(default_factory=list)
    #: ``output_audio_buffer.started`` has been sent.
    started: bool = False
    #: Clock time its first frame was sent.
    started_at: float | None = None
    #: ``response.done`` has arrived: no more audio will come for it.
    done: bool = False

    @property
    def queued(self) -> int:
        """Samples of this response still waiting to be sent."""
        return sum(item.queued for item in self.items)

    @property
    def received(self) -> int:
        """Samples of this response accepted into the buffer."""
        return sum(item.received for item in self.items)


Emit = Callable[[Event], None]


class Playback:
    """The assistant audio of one call, from deltas to frames, and its interruptions."""

    def __init__(self, call_id: str, *, max_playout_samples: int, clock: Callable[[], float],
                 stats: CallStats, to_client: Emit, to_upstream: Emit) -> None:
        self.call_id = call_id
        self.log = CallLog(logger, call_id)
        self.playout = Playout(max_playout_samples)
        self.stats = stats
        self._clock = clock
        self._send_client = to_client
        self._send_upstream = to_upstream
        self._responses: dict[str, ResponsePlayback] = {}
        self._items: dict[str, ItemPlayback] = {}
        #: Responses cut off by barge-in: their late deltas are dropped, never played.
        self._cut: deque[str] = deque(maxlen=64)
        #: Assistant items truncated or deleted here (a controller's truncation of one of
        #: them is dropped: see CallCore).
        self._truncated: deque[str] = deque(maxlen=256)
        self._last_response_id: str | None = None
        self._last_audio_at: float | None = None
        #: A barge-in that flushed reply audio mid-playout, and when the user started
        #: talking over it: its stop is timed at the next frame pulled.
        self._stopping: tuple[Truncation, float] | None = None

    def owns(self, item_id: object) -> bool:
        """Whether ``item_id`` is an assistant item whose audio is playing here now."""
        return item_id in self._items

    def truncated(self, item_id: object) -> bool:
        """Whether ``item_id`` was already truncated or deleted here."""
        return item_id in self._truncated

    def response_created(self, event: Event) -> None:
        """``response.created``: its audio may follow."""
        response_id = (event.get("response") or {}).get("id")
        if isinstance(response_id, str) and response_id not in self._cut:
            self._response(response_id)

    def item_added(self, event: Event) -> None:
        """``response.output_item.added``: a message item whose audio may follow."""
        item = event.get("item") or {}
        response_id = event.get("response_id")
        if (item.get("type") == "message" and isinstance(item.get("id"), str)
                and isinstance(response_id, str) and response_id not in self._cut):
            self._item(response_id, item["id"])

    def response_finished(self, event: Event) -> None:
        """``response.done``: no more audio will come for it."""
        response_id = (event.get("response") or {}).get("id")
        if isinstance(response_id, str):
            self._response_done(response_id)

    def next_frame(self) -> bytes:
        """The next 20 ms of audio for the peer (silence when there is none)."""
        pcm, touched = self.playout.pull()
        self.stats.frames_out += 1
        if self._stopping is not None:
            # The first frame that would have carried the flushed reply carries none.
            record, since = self._stopping
            self._stopping = None
            record.cut_latency_ms = max(0.0, self._clock() - since) * 1000
        if touched:
            self.stats.audio_frames_out += 1
            self._last_audio_at = now = self._clock()
            if self.stats.measures.speech_stopped_at is not None:
                self.stats.measures.reply_audio(now)
        for item in touched:
            response = self._responses.get(item.response_id)
            if response is None:
                continue
            if not response.started:
                response.started = True
                response.started_at = now
                self._send_client(self._buffer_event("output_audio_buffer.started", response))
            if response.done and response.queued == 0:
                self._finish(response, "output_audio_buffer.stopped")
        return pcm

    def audio_delta(self, event: Event) -> None:
        """``response.output_audio.delta``: queue its audio (unless its response was cut)."""
        response_id = event.get("response_id")
        item_id = event.get("item_id")
        if not isinstance(response_id, str) or not isinstance(item_id, str):
            self.stats.bad_upstream_messages += 1
            return
        if response_id in self._cut:
            self.stats.dropped_deltas += 1
            return
        try:
            pcm = base64.b64decode(event.get("delta") or "", validate=True)
        except (binascii.Error, ValueError):
            self.stats.bad_upstream_messages += 1
            return
        item = self._item(response_id, item_id)
        already_dropping = item.dropped > 0
        self.playout.push(item, pcm)
        if item.dropped and not already_dropping:  # once per item, not per delta
            self.log.warning("playout buffer full, dropping audio of %s", item_id)

    def _response(self, response_id: str) -> ResponsePlayback:
        response = self._responses.get(response_id)
        if response is None:
            response = self._responses[response_id] = ResponsePlayback(response_id)
            self._last_response_id = response_id
        return response

    def _item(self, response_id: str, item_id: str) -> ItemPlayback:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = ItemPlayback(item_id, response_id)
            self._response(response_id).items.append(item)
        return item

    def _response_done(self, response_id: str) -> None:
        response = self._responses.get(response_id)
        if response is None:
            return
        response.done = True
        if response.queued == 0:
            if response.started:
                self._finish(response, "output_audio_buffer.stopped")
            elif response.received == 0:
                self._forget(response)

    def interrupt(self, reason: str, *, explicit: bool, since: float | None) -> None:
        """Flush playout and tell the upstream what the user actually heard.

        ``since`` is when the user started talking over the reply, or when the request to
        stop arrived (None: unknown); the barge-in's stop latency is timed from it.
        """
        now = self._clock()
        cut = [r for r in self._responses.values() if r.received or not r.done]
        record = Truncation(reason, now, [r.response_id for r in cut])
        playing = any(r.started and r.queued for r in cut)
        began = [r.started_at for r in cut if r.started_at is not None]
        if since is not None and began:
            # A reply that began after the user did was talked over from its start.
            since = max(since, min(began))
        self.playout.discard({r.response_id for r in cut})
        for response in cut:
            self._cut.append(response.response_id)
            for item in response.items:
                self._truncate(item, record)
            if response.received:
                self._finish(response, "output_audio_buffer.cleared")
            else:
                self._forget(response)
        if explicit and not any(r.received for r in cut):
            # The client asked to clear: answer even when nothing was playing.
            self._send_client({"type": "output_audio_buffer.cleared", "event_id": new_event_id(),
                               "response_id": self._last_response_id})
        if cut:
            self._time_stop(record, since, playing)
            self.stats.barge_ins.append(record)
            self.log.info("barge-in (%s): truncated %s, deleted %s",
                          reason, record.truncated, record.deleted)

    def _time_stop(self, record: Truncation, since: float | None, playing: bool) -> None:
        """Time how long reply audio went on after ``since`` (see ``cut_latency_ms``)."""
        if since is None or self._last_audio_at is None:
            return
        if playing:
            # Reply audio was still queued: the next frame pulled is where it stops.
            self._stopping = (record, since)
            return
        # The queue had run dry already: the reply stopped where its last frame ended,
        # and was talked over only if that was after the user started.
        ended = self._last_audio_at + FRAME_SECONDS
        if ended > since:
            record.cut_latency_ms = (ended - since) * 1000

    def _truncate(self, item: ItemPlayback, record: Truncation) -> None:
        # Floor to whole ms: never claim more than was sent (nor, so, received).
        audio_end_ms = item.sent // _SAMPLES_PER_MS
        if audio_end_ms > 0:
            self._send_upstream({"type": "conversation.item.truncate",
                                      "item_id": item.item_id, "content_index": 0,
                                      "audio_end_ms": audio_end_ms})
            record.truncated.append((item.item_id, audio_end_ms))
            self._truncated.append(item.item_id)
        else:
            # The upstream rejects a truncation at 0 ms; nothing was heard, so drop it.
            self._send_upstream({"type": "conversation.item.delete",
                                      "item_id": item.item_id})
            record.deleted.append(item.item_id)
            self._truncated.append(item.item_id)

    def _finish(self, response: ResponsePlayback, kind: str) -> None:
        self._send_client(self._buffer_event(kind, response))
        self._forget(response)

    def _forget(self, response: ResponsePlayback) -> None:
        self._responses.pop(response.response_id, None)
        for item in response.items:
            self._items.pop(item.item_id, None)

    def _buffer_event(self, kind: str, response: ResponsePlayback) -> Event:
        return {"type": kind, "event_id": new_event_id(), "response_id": response.response_id}
