"""One GPT-Live session of the embedded server, without I/O.

It speaks the primary WebSocket's contract (``docs/LIVE_PROTOCOL.md``): ``session.start``
first (anything else before it is refused), answered by ``session.started``; then
``session.input_audio.append`` in the session's format (PCM16 at 24 kHz here), from which
the energy detector the relay shares (:mod:`relay.protocol.energy_vad`) finds turns. A
turn's words come from the same recogniser (a :class:`~..assistant.Transcribe` job) and
are sent as ``session.input_transcript.delta`` events placed on the session timeline; the
reply ("You said: ...") is spoken by the same synthesiser and goes out as
``session.output_audio.delta`` events, each with the ``session.output_transcript.delta``
of the words it carries, on the timeline where that audio plays.

The session timeline is the input audio: a primary WebSocket streams the microphone
continuously, so a millisecond of input is a millisecond of session. Output is placed
from the input position at which it starts, after any output before it.

Interruption is the server's, as on the hosted service (no truncation commands exist):
the driver hands output out in real time, one delta ahead, so when the user starts
speaking over a reply, what is not handed out yet is dropped, and so is its transcript.

With ``delegation: {"type": "client"}`` a turn is delegated instead of answered
(``session.delegation.created``); the application answers with
``session.commentary.append`` naming the delegation, which is acknowledged
(``session.commentary.appended``) and spoken. Responses and Decisions delegation need a
real backend model: refused at start with a clear error, as are the commands that need
one (``response.*``, ``decision.*``) and audio fixtures.

Without the speech extra (the parrot mode), a turn is played back with no transcripts;
in echo mode every append is returned at once as output audio.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ....errors import InvalidRequest, RelayError
from ....protocol.energy_vad import EnergyVad, SpeechStarted, SpeechStopped, VadEvent
from ....protocol.events import Event, parse_event, random_id
from ....protocol.live.live_config import (
    PCM24K,
    SESSION_SECONDS,
    apply_update,
    check_config,
    delegation_type,
    resolved,
)
from ....protocol.live.live_events import client_event_id, live_error_event, live_event
from ... import LOCAL_MODES, LocalMode
from ..assistant import NOT_CAUGHT, SpeechJob, Synthesize, Transcribe
from ..buffer import InputBuffer
from ..conversation import BYTES_PER_MS, decode_audio
from ..response import ResponseChunk, word_pieces
from ..synthesizer import espeak_voice, words_per_minute

logger = logging.getLogger(__name__)

Handler = Callable[[Event], list[Event]]
#: The speech detector's settings: the hosted defaults of the Realtime face's server_vad.
VAD_THRESHOLD = 0.5
PREFIX_PADDING_MS = 300
SILENCE_DURATION_MS = 500


@dataclass(slots=True)
class _Output:
    """One spoken output: its audio and words, and how far it has been handed out."""

    id: str
    pcm: bytes
    text: str
    #: Session-timeline position of its first sample (set when it starts).
    start_ms: int = -1
    sent: int = 0
    words_sent: int = 0
    pieces: list[str] = field(default_factory=list)


class LiveLocalSession:
    """A GPT-Live session that needs no model, driven like the Realtime face's
    :class:`~..local_session.LocalSession` (same driver interface: events out of every input,
    speech jobs, paced chunks)."""

    def __init__(self, *, mode: LocalMode = "assistant", delta_ms: int = 100,
                 now: Callable[[], float] = time.time) -> None:
        if mode not in LOCAL_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode: LocalMode = mode
        self.delta_ms = delta_ms
        self._now = now
        self.session_id = random_id("live_")
        self.config: dict[str, Any] | None = None
        self.expires_at = 0
        #: True once the session has closed (the driver closes the socket).
        self.finished = False
        self._buffer = InputBuffer()
        self._received = 0  # input bytes since the session started: the timeline
        self._muted = False
        self._vad = EnergyVad(threshold=VAD_THRESHOLD, prefix_padding_ms=PREFIX_PADDING_MS,
                              silence_duration_ms=SILENCE_DURATION_MS)
        self._speech_start_ms = 0
        self._jobs: list[SpeechJob] = []
        self._turns: dict[str, tuple[int, int]] = {}  # transcribe job id → (start, end)
        self._outputs: deque[_Output] = deque()
        self._output_end_ms = 0
        self._delegations: set[str] = set()
        self._output_ms = 0
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "session.input_audio.append": self._append,
            "session.input_audio.mute": self._mute,
            "session.input_audio.unmute": self._unmute,
            "session.instructions.append": self._context_append,
            "session.thinking.append": self._context_append,
            "session.commentary.append": self._commentary_append,
            "session.close": self._close_requested,
        }

    # -- the driver's interface ----------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id (``live_...``), for logs."""
        return self.session_id

    @property
    def now_ms(self) -> int:
        """Where the session timeline is: milliseconds of input audio heard."""
        return self._received // BYTES_PER_MS

    @property
    def has_pending_chunk(self) -> bool:
        """Whether :meth:`next_response_chunk` has audio to hand out."""
        return bool(self._outputs)

    def start(self) -> list[Event]:
        """Nothing: a Live client speaks first (``session.start``)."""
        return []

    def receive_message(self, data: str | bytes) -> list[Event]:
        """Handle one raw WebSocket message; malformed JSON becomes an ``error`` event."""
        try:
            event = parse_event(data)
        except RelayError as exc:
            return [live_error_event(exc)]
        return self.receive_event(event)

    def receive_event(self, event: Mapping[str, Any]) -> list[Event]:
        """Handle one client command; an error becomes an ``error`` event naming its
        ``event_id`` and leaves the session as it was."""
        event = dict(event)
        try:
            return self._dispatch(event)
        except RelayError as exc:
            return [live_error_event(exc, client_event_id(event))]

    def next_response_chunk(self) -> ResponseChunk | None:
        """The next delta of output audio with the transcript of the words it carries.
        The first delta of an output asks for no wait, so the listener is one delta
        ahead (its jitter margin)."""
        if not self._outputs:
            return None
        output = self._outputs[0]
        first = output.sent == 0
        if first:
            output.start_ms = max(self.now_ms, self._output_end_ms)
        size = self.delta_ms * BYTES_PER_MS
        pcm = output.pcm[output.sent:output.sent + size]
        output.sent += len(pcm)
        end_ms = output.start_ms + output.sent // BYTES_PER_MS
        self._output_end_ms = end_ms
        self._output_ms += len(pcm) // BYTES_PER_MS
        events: list[Event] = [{"type": "session.output_audio.delta",
                                "delta": _b64(pcm)}]
        events += self._words_until(output, end_ms)
        final = output.sent >= len(output.pcm)
        if final:
            self._outputs.popleft()
        return ResponseChunk(output.id, events, 0 if first else len(pcm) // BYTES_PER_MS,
                             final)

    def close(self) -> list[Event]:
        """Events that end the session when the server shuts down."""
        return self._closed("close_requested") if self.config is not None else []

    def take_jobs(self) -> list[SpeechJob]:
        """The speech work asked for since the last call, in order."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def transcription_done(self, job: Transcribe, transcript: str) -> list[Event]:
        """A turn's words: its transcript deltas on the timeline, then the reply (or, with
        client delegation, a delegation)."""
        start_ms, end_ms = self._turns.pop(job.item_id, (self.now_ms, self.now_ms))
        words = " ".join(transcript.split())
        events = _spread("session.input_transcript.delta", words, start_ms, end_ms)
        if words and self._delegates():
            delegation_id = random_id("del_")
            self._delegations.add(delegation_id)
            events.append(live_event("session.delegation.created", offset_ms=end_ms,
                                     delegation={"id": delegation_id, "target": "client",
                                                 "type": "delegation"}))
            return events
        self._say(f"You said: {words}" if words else NOT_CAUGHT, job.item_id)
        return events

    def transcription_failed(self, job: Transcribe, message: str) -> list[Event]:
        """A turn could not be heard: play it back instead (the parrot's answer)."""
        self._turns.pop(job.item_id, None)
        logger.debug("live %s: transcription failed: %s", self.id, message)
        self._outputs.append(_Output(random_id("out_"), job.audio, ""))
        return []

    def synthesis_done(self, job: Synthesize, pcm: bytes) -> list[Event]:
        """A reply is spoken: queue its audio (after any output in progress)."""
        self._outputs.append(_Output(job.response_id, pcm, job.text,
                                     pieces=word_pieces(job.text)))
        return []

    def synthesis_failed(self, job: Synthesize, message: str) -> list[Event]:
        """A reply could not be spoken: say so in an ``error`` event."""
        return [live_error_event(RelayError(f"The reply could not be spoken: {message}",
                                            code="speech_failed"))]

    # -- commands -----------------------------------------------------------------------

    def _dispatch(self, event: Event) -> list[Event]:
        kind = event["type"]
        if kind == "session.start":
            return self._start(event)
        if self.config is None:
            raise InvalidRequest("Send session.start first and wait for session.started.",
                                 code="session_not_started", param="type")
        if self.finished:
            raise InvalidRequest("The session has closed.", code="session_closed")
        handler = self._handlers.get(kind)
        if handler is not None:
            return handler(event)
        if kind in ("response.create", "response.item.create", "decision.create",
                    "decision.item.create", "decision.item.delete"):
            raise InvalidRequest(
                f"'{kind}' needs a Responses or Decisions backend, which the embedded "
                "server does not have (use delegation {\"type\": \"client\"}).",
                code="delegation_unsupported", param="type")
        if kind == "session.output_audio.fixture.play":
            raise InvalidRequest("Audio fixtures are not supported by the embedded server.",
                                 code="unsupported_event", param="type")
        raise InvalidRequest(f"Unknown Live client event type '{kind}'.",
                             code="invalid_value", param="type")

    def _start(self, event: Event) -> list[Event]:
        if self.config is not None:
            raise InvalidRequest("The session has already started.",
                                 code="session_already_started", param="type")
        config = check_config(event.get("session"), media=False)
        owner = delegation_type(config)
        if owner != "client":
            raise InvalidRequest(
                f"'{owner}' delegation needs a real backend model, which the embedded "
                "server does not have: use delegation {\"type\": \"client\"} (or none), "
                "or a relay with an upstream key.",
                code="delegation_unsupported", param="session.delegation.type")
        fmt = (config.get("audio") or {}).get("format")
        if fmt is not None and dict(fmt) != dict(PCM24K):
            raise InvalidRequest(
                "The embedded server takes audio/pcm at 24000 Hz only.",
                code="unsupported_audio_format", param="session.audio.format")
        config.setdefault("audio", {})["format"] = dict(PCM24K)
        self.config = config
        self.expires_at = int(self._now()) + SESSION_SECONDS
        return [self._reply(event, live_event("session.started", session=self.resource()))]

    def resource(self) -> dict[str, Any]:
        """The session as events describe it (``SessionResource``)."""
        assert self.config is not None
        return resolved(self.config, self.session_id, self.expires_at)

    def _session_update(self, event: Event) -> list[Event]:
        assert self.config is not None
        self.config = apply_update(self.config, event.get("session"))
        return [self._reply(event, live_event("session.updated", session=self.resource()))]

    def _mute(self, event: Event) -> list[Event]:
        self._muted = True
        return [self._reply(event, live_event("session.input_audio.muted"))]

    def _unmute(self, event: Event) -> list[Event]:
        self._muted = False
        return [self._reply(event, live_event("session.input_audio.unmuted"))]

    def _context_append(self, event: Event) -> list[Event]:
        _content(event)
        kind = event["type"].removesuffix(".append") + ".appended"
        now = self.now_ms
        return [self._reply(event, live_event(kind, start_ms=now, end_ms=now))]

    def _commentary_append(self, event: Event) -> list[Event]:
        content = _content(event)
        delegation_id = event.get("delegation_id")
        if delegation_id is not None and delegation_id not in self._delegations:
            raise InvalidRequest(f"No client delegation '{delegation_id}' in this session.",
                                 code="delegation_not_found", param="delegation_id")
        now = self.now_ms
        self._say(content, random_id("out_"))
        return [self._reply(event, live_event("session.commentary.appended",
                                              start_ms=now, end_ms=now))]

    def _close_requested(self, event: Event) -> list[Event]:
        return [self._reply(event, *self._closed("close_requested"))]

    def _closed(self, reason: str) -> list[Event]:
        if self.finished:
            return []
        self.finished = True
        self._outputs.clear()
        seconds = self.now_ms // 1000
        return [live_event("session.closed", reason=reason, session=self.resource(),
                           usage={"seconds": seconds})]

    # -- audio --------------------------------------------------------------------------

    def _append(self, event: Event) -> list[Event]:
        pcm = decode_audio(event.get("audio"), "audio")
        self._received += len(pcm)
        if self.mode == "echo":
            self._outputs.append(_Output(random_id("out_"), pcm, ""))
            return []
        heard = bytes(len(pcm)) if self._muted else pcm
        self._buffer.append(heard)
        events: list[Event] = []
        for found in self._vad.feed(heard):
            events += self._on_vad(found)
        self._buffer.drop_before(self._vad.retain_from_ms() * BYTES_PER_MS)
        return events

    def _on_vad(self, found: VadEvent) -> list[Event]:
        if isinstance(found, SpeechStarted):
            self._speech_start_ms = found.audio_start_ms
            self._interrupt()
            return []
        assert isinstance(found, SpeechStopped)
        start, end = self._speech_start_ms, found.audio_end_ms
        audio = self._buffer.slice(start * BYTES_PER_MS, end * BYTES_PER_MS)
        if self.mode == "parrot":
            self._outputs.append(_Output(random_id("out_"), audio, ""))
            return []
        turn_id = random_id("turn_")
        self._turns[turn_id] = (start, end)
        self._jobs.append(Transcribe(turn_id, audio, None))
        return []

    def _interrupt(self) -> None:
        """The user speaks over the output: what was not handed out is never said."""
        if self._outputs:
            logger.debug("live %s: interrupted", self.id)
            self._outputs.clear()

    def _say(self, text: str, output_id: str) -> None:
        voice = ((self.config or {}).get("audio") or {}).get("output", {}).get("voice")
        self._jobs.append(Synthesize(output_id, text, espeak_voice(voice),
                                     words_per_minute(1.0)))

    def _delegates(self) -> bool:
        return self.config is not None and self.config.get("delegation") is not None \
            and delegation_type(self.config) == "client"

    def _words_until(self, output: _Output, end_ms: int) -> list[Event]:
        """The output transcript of the words of ``output`` that start before ``end_ms``,
        each placed on the timeline in proportion to its characters."""
        total_ms = len(output.pcm) // BYTES_PER_MS
        total_chars = max(sum(len(p) for p in output.pieces), 1)
        events: list[Event] = []
        before = sum(len(p) for p in output.pieces[:output.words_sent])
        while output.words_sent < len(output.pieces):
            piece = output.pieces[output.words_sent]
            start = output.start_ms + total_ms * before // total_chars
            if start >= end_ms:
                break
            before += len(piece)
            stop = output.start_ms + total_ms * before // total_chars
            events.append(live_event("session.output_transcript.delta", delta=piece,
                                     start_ms=start, end_ms=stop))
            output.words_sent += 1
        return events

    @staticmethod
    def _reply(command: Event, *events: Event) -> Event:
        """The first of ``events``, naming the command it answers (``client_event_id``)."""
        first = events[0]
        cid = client_event_id(command)
        if cid is not None:
            first["client_event_id"] = cid
        return first


def _content(event: Event) -> str:
    content = event.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequest("'content' must be a non-empty string.",
                             code="invalid_value", param="content")
    return content


def _spread(kind: str, text: str, start_ms: int, end_ms: int) -> list[Event]:
    """``text`` as one delta per word, spread over ``[start_ms, end_ms]`` by characters."""
    pieces = word_pieces(text)
    total = max(sum(len(p) for p in pieces), 1)
    events, before = [], 0
    span = max(end_ms - start_ms, 0)
    for piece in pieces:
        start = start_ms + span * before // total
        before += len(piece)
        events.append(live_event(kind, delta=piece, start_ms=start,
                                 end_ms=start_ms + span * before // total))
    return events


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()
