"""One recording's files on disk, written as the call goes; every method blocks (the
recorder runs them on its writer thread, never on the event loop).

A recording is a directory named after its call::

    <record dir>/<call id>/
        audio.ogg       stereo Ogg/Opus: left the user, right the assistant (stereo_timeline.py)
        events.jsonl    the events both ways, one JSON line each (event_lines.py)
        metadata.json   ids, timings, session, close reason, the call's last figures

The Ogg muxer writes a page at least every :data:`PAGE_MICROSECONDS` and flushes every
packet to the file, and the events are flushed with each batch, so a relay killed mid-call
leaves files that decode up to about a batch before the kill. ``metadata.json`` is
replaced atomically; its ``status`` says ``recording`` until the call's end is written,
then ``complete``.
"""

from __future__ import annotations

import contextlib
import fractions
import json
import os
from pathlib import Path
from typing import IO, Any

import av

from ..audio import FRAME_SAMPLES, RATE, SAMPLE_BYTES

AUDIO_FILE = "audio.ogg"
EVENTS_FILE = "events.jsonl"
METADATA_FILE = "metadata.json"
FILES = (AUDIO_FILE, EVENTS_FILE, METADATA_FILE)

#: Longest stretch of audio in one Ogg page (the muxer's default is a second).
PAGE_MICROSECONDS = 100_000
#: Stereo Opus: 24 kbit/s a channel keeps speech clear, about 22 MB an hour for the two.
BITRATE = 48_000
_STEREO_FRAME_BYTES = 2 * FRAME_SAMPLES * SAMPLE_BYTES
_TIME_BASE = fractions.Fraction(1, RATE)


def write_json_atomically(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, so a reader never sees half of it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


class RecordingFiles:
    """The three files of one recording, open for writing."""

    def __init__(self, directory: Path, metadata: dict[str, Any]) -> None:
        # What was said is private: only the relay's user may enter the directory.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        write_json_atomically(directory / METADATA_FILE, metadata)
        self._events: IO[str] = open(directory / EVENTS_FILE, "a", encoding="utf-8")
        self._container = av.open(str(directory / AUDIO_FILE), "w", format="ogg", options={
            "page_duration": str(PAGE_MICROSECONDS), "flush_packets": "1"})
        stream = self._container.add_stream("libopus", rate=RATE)
        stream.codec_context.layout = "stereo"
        stream.codec_context.format = "s16"
        stream.codec_context.bit_rate = BITRATE
        # CELT only: a third of the hybrid mode's encoding time (relay/audio/encode.py).
        stream.codec_context.options = {"application": "lowdelay"}
        self._stream = stream
        self._rest = b""
        self._frames = 0
        self._closed = False

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return self._frames * FRAME_SAMPLES / RATE

    def append(self, stereo: bytes, lines: list[str]) -> None:
        """Add interleaved stereo PCM16 (24 kHz) to the audio and ``lines`` to the events."""
        if lines:
            self._events.write("".join(line + "\n" for line in lines))
            self._events.flush()
        data = self._rest + stereo
        whole = len(data) - len(data) % _STEREO_FRAME_BYTES
        for start in range(0, whole, _STEREO_FRAME_BYTES):
            self._encode(data[start:start + _STEREO_FRAME_BYTES])
        self._rest = data[whole:]

    def finish(self, metadata: dict[str, Any]) -> None:
        """Write the last audio and the final metadata, and close the files."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._rest:
                self._encode(self._rest + bytes(_STEREO_FRAME_BYTES - len(self._rest)))
                self._rest = b""
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._events.close()
        write_json_atomically(self.directory / METADATA_FILE,
                              {**metadata, "audio_seconds": round(self.seconds, 3)})

    def abandon(self) -> None:
        """Close the files as they are (the writer failed)."""
        if self._closed:
            return
        self._closed = True
        for close in (self._container.close, self._events.close):
            with contextlib.suppress(Exception):  # closing what is already broken
                close()

    def _encode(self, pcm: bytes) -> None:
        frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._frames * FRAME_SAMPLES
        self._frames += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
