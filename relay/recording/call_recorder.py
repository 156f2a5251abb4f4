"""One call's recorder: what the call driver feeds it, batched to the writer thread.

The driver (of any protocol family) calls four small hooks: :meth:`CallRecorder.uplink`
with the user's audio as it reaches the relay, :meth:`CallRecorder.downlink` with each
frame it sends the user (silence and the cut after a barge-in included: what the user
heard), :meth:`CallRecorder.event` with each event both ways, and
:meth:`CallRecorder.finish` once the call has ended. They only place audio on the
timeline and queue lines; every :meth:`CallRecorder.flush` (the recordings' ticker calls
it a few times a second) hands what is ready to one writer thread, which encodes and
writes it (relay/recording/recording_files.py). A call that is not recorded has no
recorder, and its driver makes none of these calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from ..audio import RATE
from ..logs import CallLog
from ..protocol.redact import Redactor
from .event_lines import EventLines
from .recording_files import RecordingFiles
from .stereo_timeline import ASSISTANT, USER, StereoTimeline

logger = logging.getLogger(__name__)

#: How far behind the clock the audio is taken, so jittered packets find their place.
TAKE_LAG_SECONDS = 0.1


class CallRecorder:
    """Records one call into ``directory``, writing on ``executor`` (one thread)."""

    def __init__(self, call_id: str, directory: Path, metadata: dict[str, Any], *,
                 executor: Executor, redact: Redactor,
                 clock: Callable[[], float]) -> None:
        self.call_id = call_id
        self.directory = directory
        self.log = CallLog(logger, call_id)
        self.metadata = metadata
        #: The call's protocol family (``realtime``, ``live``), from its metadata.
        self.protocol = str(metadata.get("protocol", "realtime"))
        self.timeline = StereoTimeline(clock)
        self._lines = EventLines(redact)
        self._redact = redact
        self._pending: list[str] = []
        self._executor = executor
        self._files: RecordingFiles | None = None
        #: The last write handed to the writer thread (writes run in order on it).
        self._last: asyncio.Future[None] | None = None
        self.failed = False
        self.finished = False
        self._submit(self._open)

    # ------------------------------------------------------------ the hooks

    def uplink(self, chunks: list[bytes]) -> None:
        """The user's audio (24 kHz mono PCM16 chunks) reached the relay now."""
        for chunk in chunks:
            self.timeline.add(USER, chunk)

    def downlink(self, pcm: bytes) -> None:
        """The relay sent the user this frame (24 kHz mono PCM16) now."""
        self.timeline.add(ASSISTANT, pcm)

    def event(self, direction: str, message: str | bytes | dict[str, Any],
              source: str | None = None) -> None:
        """An event went ``direction`` (relay/recording/event_lines.py) now."""
        if self.finished:
            return
        t = self.timeline.now() / self.timeline.rate
        line = self._lines.line(t, direction, message, source)
        if line is not None:
            self._pending.append(line)

    def flush(self) -> None:
        """Hand the audio and events that are ready to the writer thread."""
        if self.finished or self.failed:
            return
        lag = int(TAKE_LAG_SECONDS * RATE)
        stereo = self.timeline.take(self.timeline.ready(lag))
        lines, self._pending = self._pending, []
        if stereo or lines:
            self._submit(lambda: self._opened().append(stereo, lines))

    async def finish(self, metadata: dict[str, Any]) -> bool:
        """Write what is left and the final metadata (redacted), and close the files;
        True when the recording is complete on disk."""
        if self.finished:
            return not self.failed
        stereo = self.timeline.take()
        lines, self._pending = self._pending, []
        self.finished = True
        final = self._redacted({**self.metadata, **metadata, "status": "complete"})

        def last() -> None:
            files = self._opened()
            files.append(stereo, lines)
            files.finish(final)

        if not self.failed:
            self._submit(last)
        if self._last is not None:
            await asyncio.shield(self._last)
        return not self.failed

    # ----------------------------------------------------------- the writer

    def _open(self) -> None:
        self._files = RecordingFiles(self.directory, self._redacted(
            {**self.metadata, "status": "recording"}))

    def _opened(self) -> RecordingFiles:
        assert self._files is not None  # _open ran first, or failed (and then nothing runs)
        return self._files

    def _submit(self, job: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            if self.failed:
                return
            try:
                job()
            except Exception:
                self.failed = True
                self.log.exception("recording failed; the call goes on unrecorded")
                if self._files is not None:
                    self._files.abandon()

        self._last = loop.run_in_executor(self._executor, run)

    def _redacted(self, value: dict[str, Any]) -> dict[str, Any]:
        if not self._redact:
            return value
        return dict(json.loads(self._redact(json.dumps(value))))
