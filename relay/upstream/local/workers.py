"""Speech work off the event loop: the local server's recognizer and synthesizer run in a
small pool of worker processes.

A process, not a thread: pocketsphinx holds the GIL while it decodes (a thread would stall
every call's audio for as long as an utterance takes to recognize), and eSpeak NG keeps one
global state per process. Each worker builds its own :class:`~.recognizer.Recognizer` and
:class:`~.synthesizer.Synthesizer` once, the first time it needs them, and keeps them for
its life; jobs reach it as plain bytes and strings.

The pool starts its processes on demand, with the ``spawn`` method (a fork of a process
running an event loop and aiortc's threads is not safe), and :meth:`SpeechWorkers.warm`
starts one ahead of the first turn. Without the ``speech`` extra (``pocketsphinx`` and
``espeakng-loader``), :func:`speech_missing` says what to install and no pool is made.

As with any ``spawn``-started process, a worker imports the program's main module first:
a script that runs the server must keep its work under ``if __name__ == "__main__":``
(``relay`` and the test runner do).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import TypeVar

from ...errors import SpeechError
from .recognizer import Recognizer
from .synthesizer import Synthesizer

logger = logging.getLogger(__name__)

#: The packages of the ``speech`` extra (import names).
SPEECH_PACKAGES = ("pocketsphinx", "espeakng_loader")
#: Most worker processes a pool starts (each holds a ~90 MB recognizer).
MAX_WORKERS = 4
#: How often a worker checks that its parent still lives, seconds.
PARENT_CHECK_S = 1.0

T = TypeVar("T")


def speech_missing() -> str | None:
    """None when the ``speech`` extra is installed (its packages import), else a sentence
    saying what to do."""
    missing = [name for name in SPEECH_PACKAGES if not _imports(name)]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not installed (pip install 'relay[speech]', or run "
            "scripts/setup)")


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def default_workers() -> int:
    """One worker per core but the one the event loop runs on, between 1 and 4."""
    return min(MAX_WORKERS, max(1, (os.cpu_count() or 2) - 1))


class SpeechWorkers:
    """A pool of speech worker processes, with awaitable jobs. Close it with :meth:`close`
    (idempotent); a pool whose worker died is replaced on the next job."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def warm(self) -> None:
        """Start a worker and build its engines now, so the first turn does not wait."""
        self._executor().submit(_warm).add_done_callback(_log_failure)

    async def transcribe(self, pcm: bytes) -> str:
        """The words in ``pcm`` (24 kHz mono PCM16); :class:`SpeechError` if it fails."""
        return await self._run(_transcribe, pcm)

    async def transcribe_scored(self, pcm: bytes) -> list[tuple[str, float]]:
        """The words in ``pcm`` with their log probabilities; :class:`SpeechError` if it
        fails."""
        return await self._run(_transcribe_scored, pcm)

    async def synthesize(self, text: str, voice: str, rate: int) -> bytes:
        """``text`` spoken by the eSpeak ``voice`` at ``rate`` words per minute, as 24 kHz
        mono PCM16; :class:`SpeechError` if it fails."""
        return await self._run(_synthesize, text, voice, rate)

    def close(self, *, wait: bool = False) -> None:
        """Stop the workers: queued jobs are dropped, a job in progress runs out in its
        process, which exits then; ``wait`` waits for that (it blocks)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    async def _run(self, job: Callable[..., T], *args: object) -> T:
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job, *args)
        except SpeechError:
            raise
        except BrokenExecutor as exc:
            # A worker died (killed, out of memory): start afresh on the next job.
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise SpeechError("a speech worker process died") from exc
        except Exception as exc:
            raise SpeechError(f"speech worker failed: {exc}") from exc

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise SpeechError("the speech workers are closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_follow_parent,
                                             initargs=(os.getpid(),))
        return self._pool


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("speech worker did not start: %s", future.exception())


# -- in the worker process ------------------------------------------------------------------
# The engines are built once per process and live as long as it does: that is what a
# worker is for, so they are cached here rather than passed around.

@functools.cache
def _recognizer() -> Recognizer:
    return Recognizer()


@functools.cache
def _synthesizer() -> Synthesizer:
    return Synthesizer()


def _follow_parent(parent: int) -> None:
    """Exit when the parent process is gone. A parent killed without closing its pool
    (SIGTERM, SIGKILL) leaves its workers waiting forever on a queue they hold both ends
    of, and holding whatever the parent's stdout was (a test's pipe, say)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _warm() -> None:
    _recognizer()
    _synthesizer()


def _transcribe(pcm: bytes) -> str:
    return _recognizer().transcribe(pcm)


def _transcribe_scored(pcm: bytes) -> list[tuple[str, float]]:
    return _recognizer().transcribe_scored(pcm)


def _synthesize(text: str, voice: str, rate: int) -> bytes:
    return _synthesizer().synthesize(text, voice, rate)
