"""``server_vad``'s ``idle_timeout_ms`` for the local server, sans-I/O: when the user has
been silent long enough since the last reply played out.

Everything is measured on the input audio clock (milliseconds of audio appended), which a
WebRTC call advances in real time whether anyone speaks or not. A reply "plays out" from
when its first audio was handed out, for as long as its audio lasts; the hosted service
likewise counts from ``response.done`` plus the playback time.
"""

from __future__ import annotations


class IdleClock:
    """Counts silence toward ``idle_timeout_ms``; :meth:`due` says when it has run out."""

    def __init__(self) -> None:
        #: Input time from which silence counts; None while it is not counting.
        self._from_ms: int | None = None
        #: Input time at which the latest reply's audio has played out.
        self._playback_end_ms = 0
        self._playing: tuple[str, int, int] | None = None  # (response id, from ms, ms sent)

    def reset(self) -> None:
        """Stop counting (turn detection changed); counting restarts at the next append."""
        self._from_ms = None

    def played(self, response_id: str, audio_ms: int, now_ms: int) -> None:
        """A response handed out ``audio_ms`` more of its audio at input time ``now_ms``."""
        if not audio_ms:
            return
        if self._playing is None or self._playing[0] != response_id:
            self._playing = (response_id, now_ms, 0)
        rid, start, sent = self._playing
        self._playing = (rid, start, sent + audio_ms)
        self._playback_end_ms = max(self._playback_end_ms, start + sent + audio_ms)

    def due(self, *, since_ms: int, now_ms: int, busy: bool, timeout_ms: int) -> int | None:
        """Where the silence began if ``timeout_ms`` of it has passed by ``now_ms`` (and
        the clock restarts), else None. ``busy`` (the user speaks, or a response is under
        way) stops the count; ``since_ms`` is where the audio just appended began, from
        which a new count starts (or from the playback's end, if later)."""
        if busy:
            self._from_ms = None
            return None
        if self._from_ms is None:
            self._from_ms = max(since_ms, self._playback_end_ms)
        start = self._from_ms
        if now_ms - start < timeout_ms:
            return None
        self._from_ms = None
        return start
