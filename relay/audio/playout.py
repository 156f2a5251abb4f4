"""The playout buffer: assistant audio queued for the peer, with per-item accounting.

Sans-I/O: the outbound track *pulls* one 20 ms frame at a time on its own clock; the
buffer says which items that audio belonged to, and exactly how many samples of each item
have gone to the peer. That count is the truth barge-in needs: the user heard what was
sent, no more (see ``conversation.item.truncate``).

Memory is bounded: at most ``max_samples`` are queued. Audio pushed past the bound is
dropped (counted in :attr:`ItemPlayback.dropped` and :attr:`Playout.dropped`), so a
runaway upstream costs a bounded amount of memory and the oldest audio, already queued
in order, still plays.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from . import FRAME_BYTES, SAMPLE_BYTES

_SILENCE = bytes(FRAME_BYTES)


@dataclass
class ItemPlayback:
    """What happened to one assistant item's audio."""

    item_id: str
    response_id: str
    #: Samples accepted into the buffer.
    received: int = 0
    #: Samples sent to the peer: the position in the item the user has heard up to.
    sent: int = 0
    #: Samples refused because the buffer was full.
    dropped: int = 0

    @property
    def queued(self) -> int:
        """Samples accepted but not sent yet."""
        return self.received - self.sent


class Playout:
    """A FIFO of assistant audio, pulled in 20 ms frames."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._segments: deque[tuple[ItemPlayback, bytes]] = deque()
        self._offset = 0  # bytes of the head segment already sent
        self._queued = 0  # samples queued, all items
        #: Samples dropped at the bound over the buffer's life.
        self.dropped = 0

    @property
    def queued(self) -> int:
        """Samples waiting to be sent."""
        return self._queued

    def push(self, item: ItemPlayback, pcm: bytes) -> int:
        """Queue ``pcm`` (24 kHz mono s16) for ``item``; return the samples accepted."""
        samples = len(pcm) // SAMPLE_BYTES
        room = max(0, self.max_samples - self._queued)
        if samples > room:
            item.dropped += samples - room
            self.dropped += samples - room
            samples = room
        if samples:
            self._segments.append((item, pcm[: samples * SAMPLE_BYTES]))
            item.received += samples
            self._queued += samples
        return samples

    def pull(self) -> tuple[bytes, list[ItemPlayback]]:
        """The next 20 ms frame, padded with silence, and the items it carried audio of."""
        if not self._segments:
            return _SILENCE, []
        out = bytearray()
        touched: list[ItemPlayback] = []
        while self._segments and len(out) < FRAME_BYTES:
            item, data = self._segments[0]
            take = min(FRAME_BYTES - len(out), len(data) - self._offset)
            out += data[self._offset : self._offset + take]
            self._offset += take
            item.sent += take // SAMPLE_BYTES
            self._queued -= take // SAMPLE_BYTES
            if not touched or touched[-1] is not item:
                touched.append(item)
            if self._offset == len(data):
                self._segments.popleft()
                self._offset = 0
        if len(out) < FRAME_BYTES:
            out += _SILENCE[: FRAME_BYTES - len(out)]
        return bytes(out), touched

    def discard(self, response_ids: set[str] | None = None) -> int:
        """Drop queued audio (of ``response_ids`` only, if given); return samples dropped.

        Items keep their ``sent`` count: it is what the peer has received.
        """
        kept: deque[tuple[ItemPlayback, bytes]] = deque()
        removed = 0
        for index, (item, data) in enumerate(self._segments):
            if response_ids is None or item.response_id in response_ids:
                start = self._offset if index == 0 else 0
                removed += (len(data) - start) // SAMPLE_BYTES
            else:
                if index == 0 and self._offset:
                    data = data[self._offset :]
                kept.append((item, data))
        self._segments = kept
        self._offset = 0  # a kept head segment was sliced past its sent part above
        self._queued -= removed
        return removed
