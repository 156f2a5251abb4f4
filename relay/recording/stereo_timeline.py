"""Two mono channels placed on one clock, taken out as interleaved stereo; without I/O.

A call's recording is what a listener sitting at the relay would hear: the user's audio
from the moment it reached the relay (left), and the assistant's from the moment the relay
sent it to the user (right), each chunk at the moment it passed, as packets are timed on
the wire (so a click and its echo are the wire's round trip apart). Each chunk has its
place on that clock; audio that
follows its channel's previous chunk closely is laid end to end (packet jitter does not
chop it up), while a gap longer than :data:`GAP_SAMPLES` (the peer sent nothing for a
while, the playout clock skipped after a stall) is kept as silence. Laying end to end lets
a channel fall behind its places (a burst of packets held up while the call connected, a
late packet), or ahead of them (a short gap, such as the playout clock skipping after a
stall, laid end to end): once it has stayed more than :data:`LATE_SAMPLES` behind (or
ahead) for :data:`LATE_CHUNKS` chunks in a row, it is pulled back (that much of its latest
audio not yet written is dropped) or forward (that much silence is laid) by the least it
was, so the two channels stay aligned to
within a few milliseconds for the whole call. The driver feeds the chunks as they pass;
the recorder takes the stereo audio up to a moment that both channels have passed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..audio import FRAME_SAMPLES, RATE, SAMPLE_BYTES

#: A channel that falls this far behind the clock is filled with silence up to it: less
#: than this is jitter (a late packet, a chunk decoded a little late), laid end to end.
GAP_SAMPLES = 2 * FRAME_SAMPLES

#: A channel this far behind its chunks' places for :data:`LATE_CHUNKS` chunks in a row
#: is pulled back: packet jitter leaves less, and is laid end to end.
LATE_SAMPLES = FRAME_SAMPLES // 4
LATE_CHUNKS = 10

#: Channel indexes in the stereo output.
USER, ASSISTANT = 0, 1


class _Channel:
    """One channel's audio not yet taken, from sample index ``base``."""

    def __init__(self) -> None:
        self.base = 0
        self.pending = bytearray()
        #: How many chunks in a row were placed late, and the least any of them was.
        self._late_chunks = 0
        self._least_late = 0

    @property
    def end(self) -> int:
        """The sample index after the last one placed."""
        return self.base + len(self.pending) // SAMPLE_BYTES

    def place(self, pcm: bytes, at: int) -> None:
        """Lay ``pcm`` (PCM16) at sample ``at``, or right after what is there if that is
        no more than a gap away (or already past)."""
        late = self.end - at
        if -late > GAP_SAMPLES:
            self.pending += bytes(-late * SAMPLE_BYTES)
            late = 0
        self._realign(late)
        self.pending += pcm

    def _realign(self, late: int) -> None:
        """Pull the channel back (``late`` > 0: it is behind its places) or forward (< 0:
        ahead, after laying a short gap end to end) once it has stayed so for
        :data:`LATE_CHUNKS` chunks, by the least it was."""
        if abs(late) <= LATE_SAMPLES or (self._late_chunks and (late > 0) != (
                self._least_late > 0)):
            self._late_chunks = 0
            if abs(late) <= LATE_SAMPLES:
                return
        least = self._least_late
        self._least_late = late if self._late_chunks == 0 else (
            min(least, late) if late > 0 else max(least, late))
        self._late_chunks += 1
        if self._late_chunks < LATE_CHUNKS:
            return
        self._late_chunks = 0
        if self._least_late > 0:
            cut = min(self._least_late, len(self.pending) // SAMPLE_BYTES)
            if cut > 0:
                del self.pending[-cut * SAMPLE_BYTES:]
        else:
            self.pending += bytes(-self._least_late * SAMPLE_BYTES)

    def take(self, upto: int) -> np.ndarray:
        """Samples ``base`` to ``upto`` (silence where nothing was placed); drops them."""
        count = upto - self.base
        have = min(len(self.pending) // SAMPLE_BYTES, count)
        out = np.zeros(count, dtype="<i2")
        if have > 0:
            out[:have] = np.frombuffer(self.pending, dtype="<i2", count=have)
            del self.pending[:have * SAMPLE_BYTES]
        self.base = upto
        return out


class StereoTimeline:
    """The user's and the assistant's audio (24 kHz mono PCM16 each) on one clock.

    ``clock`` gives seconds (the event loop's time); sample 0 is the clock's value when
    the timeline was made.
    """

    def __init__(self, clock: Callable[[], float], rate: int = RATE) -> None:
        self._clock = clock
        self.rate = rate
        self.origin = clock()
        self._channels = (_Channel(), _Channel())

    def now(self) -> int:
        """The sample index of this moment."""
        return round((self._clock() - self.origin) * self.rate)

    def add(self, channel: int, pcm: bytes) -> None:
        """``pcm`` of ``channel`` (:data:`USER` or :data:`ASSISTANT`) passes the relay now."""
        self._channels[channel].place(pcm, self.now())

    @property
    def taken(self) -> int:
        """Samples already taken (the same for both channels)."""
        return self._channels[0].base

    def take(self, upto: int | None = None) -> bytes:
        """Interleaved stereo PCM16 from where the last take ended to sample ``upto`` (by
        default, the furthest either channel has reached, at least the clock's now).

        A channel that has not reached ``upto`` is filled with silence there; its audio
        that comes later is laid after that silence.
        """
        if upto is None:
            upto = max(self.now(), *(c.end for c in self._channels))
        if upto <= self.taken:
            return b""
        left, right = (channel.take(upto) for channel in self._channels)
        stereo = np.empty(2 * len(left), dtype="<i2")
        stereo[0::2] = left
        stereo[1::2] = right
        return stereo.tobytes()

    def ready(self, lag: int) -> int:
        """The sample up to which to take now: ``lag`` samples before the clock's now, so
        that jittered audio still finds its place, but no later than the furthest channel."""
        return max(self.taken, self.now() - lag)
