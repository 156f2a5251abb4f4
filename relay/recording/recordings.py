"""The recordings of one relay: where they go, the writer thread, retention, download.

:class:`Recordings` makes each recorded call's :class:`~relay.recording.call_recorder.CallRecorder`,
flushes every live one a few times a second from one ticker task, and runs every file
operation on one writer thread (encoding included), so a slow disk or a busy encoder
never stalls the event loop. Retention runs there too: at start, after each recording is
finished and every :data:`SWEEP_INTERVAL`, recordings older than the age limit are removed,
then the oldest until the total is under the size limit (live ones are never removed).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..protocol.redact import Redactor
from .call_recorder import CallRecorder
from .recording_files import AUDIO_FILE, EVENTS_FILE, FILES, METADATA_FILE

logger = logging.getLogger(__name__)

#: Seconds between two flushes of the live recordings (what a SIGKILL may lose, at most).
FLUSH_INTERVAL = 0.25
#: Seconds between two retention sweeps (beside the one after each recording).
SWEEP_INTERVAL = 60.0
#: A recording written to this recently is live (perhaps in another process sharing the
#: directory, a sibling worker): retention never removes it.
ACTIVE_SECONDS = 60.0
#: What a recording's directory may be called: a call id (never a path).
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")

Status = Literal["recording", "ready"]


@dataclass(frozen=True)
class Retention:
    """How long recordings are kept (0: no limit) and how much disk they may take (0: any)."""

    max_age_seconds: float = 0.0
    max_bytes: int = 0


def sweep(root: Path, keep: set[str], retention: Retention, now: float) -> list[str]:
    """Remove, from ``root``, recordings older than the age limit, then the oldest while
    the total is above the size limit; ``keep`` (live recordings) and recordings written
    to in the last :data:`ACTIVE_SECONDS` are never removed.
    Returns the names removed. Blocking: runs on the writer thread."""
    entries: list[tuple[float, int, Path]] = []
    total = 0
    for directory in root.iterdir() if root.is_dir() else ():
        if not directory.is_dir() or not _NAME.fullmatch(directory.name):
            continue
        files = [f for f in directory.iterdir() if f.is_file()]
        if not any(f.name in FILES for f in files):
            continue  # not a recording
        size = sum(f.stat().st_size for f in files)
        total += size
        newest = max(f.stat().st_mtime for f in files)
        if directory.name not in keep and now - newest > ACTIVE_SECONDS:
            entries.append((newest, size, directory))
    entries.sort()
    removed: list[str] = []
    for when, size, directory in entries:
        too_old = retention.max_age_seconds > 0 and now - when > retention.max_age_seconds
        too_big = retention.max_bytes > 0 and total > retention.max_bytes
        if not (too_old or too_big):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        total -= size
        removed.append(directory.name)
    return removed


def zip_recording(directory: Path) -> bytes:
    """The recording in ``directory`` as a zip (the audio stored as it is: Opus does not
    compress further). Blocking: runs on the writer thread."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in FILES:
            path = directory / name
            if path.is_file():
                archive.write(path, name, compress_type=zipfile.ZIP_STORED
                              if name == AUDIO_FILE else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def read_events(path: Path, directions: frozenset[str],
                types: frozenset[str]) -> list[dict[str, Any]]:
    """The event lines of ``path`` going one of ``directions`` whose event's ``type`` is
    one of ``types`` (a missing file: none). Blocking: runs on the writer thread."""
    kept: list[dict[str, Any]] = []
    if not path.is_file():
        return kept
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not any(f'"dir":"{d}"' in line for d in directions):
                continue  # most lines, without parsing them
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            event = record.get("event") if isinstance(record, dict) else None
            if isinstance(event, dict) and record.get("dir") in directions \
                    and event.get("type") in types:
                kept.append(record)
    return kept


class Recordings:
    """Every recording of this relay, under ``root``."""

    def __init__(self, root: Path, retention: Retention, redact: Redactor) -> None:
        self.root = root
        self.retention = retention
        self._redact = redact
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording")
        #: Recorders of the calls recorded now, by call id.
        self._live: dict[str, CallRecorder] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._live)

    async def start(self) -> None:
        """Apply retention now; from the first recording on, flush live recordings a few
        times a second and keep retention, until :meth:`close` (a relay that records
        nothing runs nothing)."""
        await self._sweep()

    async def close(self) -> None:
        """Finish the recordings being finished, stop the ticker and the writer thread."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        # (Off the loop: the writer may still be finishing a job.)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def open(self, call_id: str, metadata: dict[str, Any],
             clock: Callable[[], float]) -> CallRecorder:
        """Begin recording the call ``call_id``; ``metadata`` goes into its metadata file."""
        if not _NAME.fullmatch(call_id):
            raise ValueError(f"not a call id: {call_id!r}")
        recorder = CallRecorder(call_id, self.root / call_id, metadata,
                                executor=self._executor, redact=self._redact, clock=clock)
        self._live[call_id] = recorder
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(),
                                                                  name="recordings")
        recorder.log.info("recording into %s", recorder.directory)
        return recorder

    def finish(self, recorder: CallRecorder, metadata: dict[str, Any],
               then: Callable[[CallRecorder], None] | None = None) -> None:
        """Finish ``recorder``'s files with ``metadata`` in the background, then call
        ``then`` (when the recording is complete) and sweep."""
        async def finish() -> None:
            try:
                complete = await recorder.finish(metadata)
            finally:
                self._live.pop(recorder.call_id, None)
            if complete and then is not None:
                then(recorder)
            await self._sweep()

        task = asyncio.get_running_loop().create_task(finish(),
                                                      name=f"{recorder.call_id}:recording")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def status(self, call_id: str) -> Status | None:
        """``recording`` while the call's recording is written, ``ready`` once it is
        complete on disk, None when there is none."""
        if call_id in self._live:
            return "recording"
        if not _NAME.fullmatch(call_id):
            return None
        return "ready" if (self.root / call_id / METADATA_FILE).is_file() else None

    def metadata(self, call_id: str) -> dict[str, Any]:
        """A ready recording's metadata (blocking, but small: one file)."""
        value = json.loads((self.root / call_id / METADATA_FILE).read_text())
        return dict(value)

    async def events(self, call_id: str, directions: Collection[str],
                     types: Collection[str]) -> list[dict[str, Any]]:
        """The lines of a ready recording's ``events.jsonl`` whose ``dir`` is one of
        ``directions`` and whose event's ``type`` one of ``types``, in order (read on the
        writer thread; lines that are not such JSON are skipped)."""
        path = self.root / call_id / EVENTS_FILE
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, read_events, path,
                                          frozenset(directions), frozenset(types))

    async def archive(self, call_id: str) -> bytes:
        """The ready recording ``call_id`` as a zip."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, zip_recording, self.root / call_id)

    async def size(self, call_id: str) -> int:
        """Bytes the recording ``call_id`` takes on disk."""
        directory = self.root / call_id

        def size() -> int:
            return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())

        return await asyncio.get_running_loop().run_in_executor(self._executor, size)

    async def _sweep(self) -> None:
        if not (self.retention.max_age_seconds or self.retention.max_bytes):
            return
        loop = asyncio.get_running_loop()
        try:
            removed = await loop.run_in_executor(
                self._executor, sweep, self.root, set(self._live), self.retention, time.time())
        except OSError:
            logger.exception("recordings: retention sweep of %s failed", self.root)
            return
        if removed:
            logger.info("recordings: retention removed %d (%s)", len(removed),
                        ", ".join(removed[:10]) + (" ..." if len(removed) > 10 else ""))

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + SWEEP_INTERVAL
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            for recorder in list(self._live.values()):
                recorder.flush()
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + SWEEP_INTERVAL
                await self._sweep()

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("finishing a recording failed", exc_info=task.exception())
