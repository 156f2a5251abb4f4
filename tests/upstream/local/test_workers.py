"""The speech workers: recognition and synthesis in processes, off the event loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.errors import SpeechError
from relay.upstream.local.recognizer import Recognizer
from relay.upstream.local.synthesizer import ESPEAK_VOICES, WORDS_PER_MINUTE
from relay.upstream.local.workers import SpeechWorkers, speech_missing

from ...support.speech import SUNNY, SUNNY_WORDS, espeak, needs_espeak, needs_speech, words
from .signals import silence

pytestmark = needs_speech
ALLOY = ESPEAK_VOICES["alloy"]


async def lag_while(job: asyncio.Future[object]) -> float:
    """The longest a 10 ms timer on this loop fired late while ``job`` ran, in seconds."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not job.done():
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        worst = max(worst, loop.time() - due)
    return worst


@needs_espeak
async def test_workers_transcribe_like_the_recognizer_in_process(
        speech_workers: SpeechWorkers) -> None:
    speech = espeak(SUNNY)
    heard = await speech_workers.transcribe(speech)
    assert SUNNY_WORDS <= words(heard)
    assert heard == Recognizer().transcribe(speech)


async def test_workers_synthesize_a_reply(speech_workers: SpeechWorkers) -> None:
    pcm = await speech_workers.synthesize("You said: the weather is sunny today", ALLOY,
                                          WORDS_PER_MINUTE)
    assert 1.5 < len(pcm) / 48000 < 4
    assert SUNNY_WORDS <= words(await speech_workers.transcribe(pcm))


@needs_espeak
async def test_workers_keep_the_loop_free_during_a_long_utterance(
        speech_workers: SpeechWorkers) -> None:
    utterance = b"".join([espeak(SUNNY) + silence(300)] * 4)  # about 8 s of speech
    job = asyncio.ensure_future(speech_workers.transcribe(utterance))
    worst = await lag_while(job)
    assert words(job.result()) >= SUNNY_WORDS
    # Decoding on a thread would stall it for the whole decode (seconds): pocketsphinx
    # holds the GIL. A shared two-core machine can still delay a timer a little.
    assert worst < 0.25, worst


async def test_workers_closed_refuse_jobs() -> None:
    workers = SpeechWorkers(1)
    workers.close()
    workers.close()
    with pytest.raises(SpeechError, match="closed"):
        await workers.transcribe(silence(100))


async def test_workers_replace_a_worker_that_died() -> None:
    workers = SpeechWorkers(1)
    before = set(multiprocessing.active_children())
    try:
        assert await workers.transcribe(silence(200)) == ""
        [child] = set(multiprocessing.active_children()) - before
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        with pytest.raises(SpeechError, match="died"):
            await workers.transcribe(silence(200))
        assert await workers.transcribe(silence(200)) == ""
    finally:
        workers.close(wait=True)


PARENT = """
import asyncio, multiprocessing, os, signal
from relay.upstream.local.workers import SpeechWorkers

async def main():
    workers = SpeechWorkers(1)
    await workers.transcribe(bytes(4800))
    print(*[child.pid for child in multiprocessing.active_children()], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no chance to close the pool

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = str(Path(__file__).resolve().parents[3])  # this tree's relay, not an installed one
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == -signal.SIGKILL, result.stderr
    pids = [int(pid) for pid in result.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "an orphaned worker lives on"
        time.sleep(0.1)


def test_workers_say_what_to_install_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert speech_missing() is None
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails, as when absent
    missing = speech_missing()
    assert missing is not None and "pocketsphinx" in missing
    assert "relay[speech]" in missing and "espeakng_loader" not in missing
