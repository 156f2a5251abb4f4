"""Fixtures of the local server's tests: one pool of speech workers for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay.upstream.local.workers import SpeechWorkers, speech_missing


@pytest.fixture(scope="session")
def speech_workers() -> Iterator[SpeechWorkers]:
    """A started pool of one speech worker (each new one costs about a second of CPU)."""
    if speech_missing() is not None:
        pytest.skip(f"no speech extra: {speech_missing()}")
    workers = SpeechWorkers(1)
    workers.warm()
    yield workers
    workers.close(wait=True)
