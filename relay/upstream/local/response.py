"""One response of the local server, generated without I/O: the events that open it, its
paced chunks, and the events that close it (completed or cancelled).

A :class:`Response` answers with one assistant message. A parrot (or tool report) response
knows all its audio and transcript up front and hands them out one ``delta_ms`` chunk at a
time; the driver decides *when* (see :class:`ResponseChunk`). An echo response stays open
and turns each appended input chunk into an output delta. A :class:`FunctionCallResponse`
calls a function instead: one ``function_call`` item whose arguments stream at once.

The assistant announces a response before it knows what to say: a
:class:`PendingResponse` is ``response.created`` alone, until the transcript it answers
and the speech of its reply are ready; the response that then opens keeps its id.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...audio import RATE
from ...protocol.events import Event, new_event_id, random_id
from .conversation import BYTES_PER_MS, Item, assistant_item, function_call_item, new_item_id

#: Audio tokens, as the hosted service bills them (about 10 per second in, 20 per second out).
INPUT_MS_PER_TOKEN = 100
OUTPUT_MS_PER_TOKEN = 50
#: Text tokens, roughly: four characters each.
CHARS_PER_TOKEN = 4
#: Characters per ``response.function_call_arguments.delta`` (a few tokens' worth).
ARGUMENT_DELTA_CHARS = 16


@dataclass(frozen=True, slots=True)
class ResponseChunk:
    """Events to send now, and how much audio they carry.

    The driver sends ``events`` at once, then waits ``audio_ms / speed`` (against an
    absolute clock) before asking for the next chunk. ``final`` chunks end the response.
    """

    response_id: str
    events: list[Event]
    audio_ms: int
    final: bool


@dataclass(slots=True)
class ResponsePlan:
    """What a response will say: the audio to send and the sentence describing it."""

    audio: bytes
    transcript: str
    input_audio_ms: int = 0


def describe_parrot(audio_ms: int) -> str:
    """The honest transcript of a parrot reply: it repeats audio it cannot understand."""
    return f"You said something {audio_ms / 1000:.1f} seconds long."


BEEP_TRANSCRIPT = "I have not heard any audio from you yet, so here is a beep."

#: What a response started by ``idle_timeout_ms`` says: the user has gone quiet.
IDLE_PROMPT = "Are you still there?"

#: The tone under a tool report: a fifth above the plain beep, so an ear can tell them apart.
TOOL_TONE_HZ = 660.0


def beep(freq_hz: float = 440.0, duration_ms: int = 300, dbfs: float = -12.0) -> bytes:
    """A sine tone as 24 kHz PCM16, with 5 ms fades so it does not click."""
    count = duration_ms * RATE // 1000
    t = np.arange(count) / RATE
    tone = np.sin(2 * np.pi * freq_hz * t) * (10 ** (dbfs / 20) * 32767)
    fade = min(120, count // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[-fade:] *= ramp[::-1]
    return bytes(tone.astype("<i2").tobytes())


def change_speed(pcm: bytes, speed: Any) -> bytes:
    """24 kHz PCM16 played ``speed`` times as fast (``audio.output.speed``, 0.25 to 1.5),
    as a tape would: resampled by linear interpolation, so its pitch moves too."""
    if not isinstance(speed, int | float) or isinstance(speed, bool) or speed == 1 \
            or speed <= 0 or len(pcm) < 4:
        return pcm
    samples = np.frombuffer(pcm[:len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    count = max(1, round(len(samples) / speed))
    positions = np.linspace(0, len(samples) - 1, count)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return bytes(np.round(out).astype("<i2").tobytes())


def token_budget(value: Any) -> int | None:
    """``max_output_tokens`` as a number of tokens, or None for ``"inf"`` (no limit)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fit_plan(plan: ResponsePlan, budget: int | None, *, audio: bool) -> tuple[ResponsePlan, bool]:
    """``plan`` cut to what ``budget`` output tokens hold, and whether it was cut.

    Tokens are counted as :func:`_usage` reports them: one per word of text (the
    transcript's words, spoken in proportion to the audio) and one per 50 ms of audio.
    """
    words = word_pieces(plan.transcript)
    if budget is None:
        return plan, False
    if not audio:
        if len(plan.transcript.split()) <= budget:
            return plan, False
        kept = _first_words(words, budget)
        return ResponsePlan(b"", "".join(kept), plan.input_audio_ms), True
    total_ms = len(plan.audio) // BYTES_PER_MS
    if _tokens_at(total_ms, total_ms, len(words)) <= budget:
        return plan, False
    low, high = 0, total_ms  # the longest audio whose tokens fit: tokens grow with it
    while low < high:
        mid = (low + high + 1) // 2
        if _tokens_at(mid, total_ms, len(words)) <= budget:
            low = mid
        else:
            high = mid - 1
    spoken = -(-len(words) * low // total_ms) if total_ms else 0
    cut = ResponsePlan(plan.audio[:low * BYTES_PER_MS], "".join(words[:spoken]),
                       plan.input_audio_ms)
    return cut, True


def _tokens_at(audio_ms: int, total_ms: int, words: int) -> int:
    """Output tokens of the first ``audio_ms`` of a reply ``total_ms`` long whose
    transcript has ``words`` words, spoken in proportion."""
    spoken = -(-words * audio_ms // total_ms) if total_ms else words
    return -(-audio_ms // OUTPUT_MS_PER_TOKEN) + spoken


def _first_words(pieces: list[str], count: int) -> list[str]:
    """The leading pieces (of :func:`word_pieces`) that hold ``count`` words."""
    kept: list[str] = []
    seen = 0
    for piece in pieces:
        seen += len(piece.split())
        if seen > count:
            break
        kept.append(piece)
    return kept


@dataclass(frozen=True, slots=True)
class ResponseOptions:
    """How a response is shaped: the session's settings under ``response.create``'s."""

    audio: bool
    #: None for an out-of-band response (``conversation: "none"``): its item joins no
    #: conversation.
    conversation_id: str | None
    output_format: dict[str, Any]
    voice: Any = "alloy"
    #: ``audio.output.speed``: how fast a synthesized reply is spoken.
    speed: Any = 1.0
    metadata: Any = None
    max_output_tokens: Any = "inf"


class ResponseHead:
    """What every response has from its ``response.created`` on: an id and its options."""

    def __init__(self, options: ResponseOptions, response_id: str | None = None) -> None:
        self.id = response_id if response_id is not None else random_id("resp_")
        self._opts = options
        #: (text, audio) input tokens of the context the response saw, once known.
        self.context_tokens: tuple[int, int] | None = None

    @property
    def options(self) -> ResponseOptions:
        """How the response is shaped."""
        return self._opts

    @property
    def is_audio(self) -> bool:
        """Whether this response speaks (``output_modalities`` ``["audio"]``)."""
        return self._opts.audio

    def created(self) -> list[Event]:
        """``response.created``: the response exists, with no output yet."""
        return [server_event("response.created", response=self._object("in_progress", None, []))]

    def _done(self, status: str, details: Any, output: list[Any],
              usage: dict[str, Any]) -> list[Event]:
        """``response.done`` and ``rate_limits.updated``; the input tokens are those of
        the context the response saw, when the session said (:attr:`context_tokens`)."""
        response = self._object(status, details, output)
        if self.context_tokens is not None:
            usage = _with_input(usage, *self.context_tokens)
        response["usage"] = usage
        return [server_event("response.done", response=response),
                server_event("rate_limits.updated", rate_limits=_rate_limits())]

    def _object(self, status: str, details: Any, output: list[Any]) -> dict[str, Any]:
        opts = self._opts
        audio = {"output": {"format": dict(opts.output_format), "voice": opts.voice}}
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": opts.conversation_id,
            "output_modalities": ["audio"] if opts.audio else ["text"],
            "max_output_tokens": opts.max_output_tokens,
            "audio": audio,
            "usage": None,
            "metadata": opts.metadata,
        }


class PendingResponse(ResponseHead):
    """A response announced (``response.created``) whose output is still being prepared:
    the assistant waits for the transcript of what it answers, then for its reply's
    speech. ``source`` is what it answers (its input items), with ``tools`` and
    ``choice``; ``reply`` is the text being synthesized, once decided."""

    def __init__(self, options: ResponseOptions, source: list[Item], tools: Any, choice: Any,
                 *, input_audio_ms: int = 0) -> None:
        super().__init__(options)
        self.source = source
        self.tools = tools
        self.choice = choice
        self.input_audio_ms = input_audio_ms
        self.reply: str | None = None
        #: What to say instead of answering the user's words (the idle timeout's prompt).
        self.prompt: str | None = None

    def finish(self, status: str, details: Any) -> list[Event]:
        """Close the response with no output: cancelled before it spoke, or failed."""
        return self._done(status, details, [], _usage(self.input_audio_ms, 0, 0))


class BaseResponse(ResponseHead, ABC):
    """A response in progress, with its one output item: what the session drives.

    The session sends :meth:`start`'s events at once, then hands out :meth:`next_chunk`
    while :meth:`has_more`; :meth:`finish` closes the response early (cancelled).
    ``response_id`` is given when a :class:`PendingResponse` already announced the id.
    """

    def __init__(self, item: Item, options: ResponseOptions,
                 response_id: str | None = None) -> None:
        super().__init__(options, response_id)
        self.item = item
        self.finished = False

    @property
    def in_conversation(self) -> bool:
        """Whether the output item joins the conversation (not ``conversation: none``)."""
        return self._opts.conversation_id is not None

    @abstractmethod
    def start(self, previous_item_id: str | None, *, announced: bool = False) -> list[Event]:
        """The events that open the response, up to where its content starts
        (``response.created`` first, unless ``announced`` already)."""

    @abstractmethod
    def has_more(self) -> bool:
        """Whether the driver should ask for another chunk."""

    @abstractmethod
    def next_chunk(self, previous_item_id: str | None) -> ResponseChunk:
        """The next chunk; the last one carries the closing events."""

    @abstractmethod
    def finish(self, status: str, reason: str | None,
               previous_item_id: str | None) -> list[Event]:
        """Close the content, the item and the response; ``reason`` goes in
        status_details."""

    def _opening(self, previous_item_id: str | None, announced: bool) -> list[Event]:
        """``response.created`` (unless ``announced``), ``response.output_item.added``
        and (in conversation) ``conversation.item.added``."""
        events = [] if announced else self.created()
        events.append(server_event("response.output_item.added", response_id=self.id,
                                   output_index=0, item=self.item.public()))
        if self.in_conversation:
            events.append(server_event("conversation.item.added",
                                       previous_item_id=previous_item_id,
                                       item=self.item.public()))
        return events

    def _closing(self, status: str, reason: str | None, previous_item_id: str | None,
                 usage: dict[str, Any]) -> list[Event]:
        """``conversation.item.done`` (in conversation), ``response.output_item.done``,
        ``response.done`` and ``rate_limits.updated``, for the item as it now stands."""
        self.finished = True
        item = self.item.public()
        events: list[Event] = []
        if self.in_conversation:
            events.append(server_event("conversation.item.done",
                                       previous_item_id=previous_item_id, item=item))
        details = None if reason is None else {"type": status, "reason": reason}
        events.append(server_event("response.output_item.done", response_id=self.id,
                                   output_index=0, item=item))
        return events + self._done(status, details, [item], usage)


class Response(BaseResponse):
    """A response that answers: one assistant message with one audio or text part."""

    def __init__(self, plan: ResponsePlan | None, options: ResponseOptions, *,
                 delta_ms: int = 100, response_id: str | None = None) -> None:
        """``plan`` is None for an open-ended echo response."""
        super().__init__(assistant_item(new_item_id()), options, response_id)
        #: Whether ``max_output_tokens`` cut the reply short (it ends ``incomplete``).
        self.cut = False
        if plan is not None:
            plan, self.cut = fit_plan(plan, token_budget(options.max_output_tokens),
                                      audio=options.audio)
        self._plan = plan
        self._delta_bytes = max(1, delta_ms) * BYTES_PER_MS
        self._sent_bytes = 0
        self._words = word_pieces(plan.transcript) if plan is not None else []
        self._sent_words = 0

    # -- opening -----------------------------------------------------------------------

    def start(self, previous_item_id: str | None, *, announced: bool = False) -> list[Event]:
        """``response.created`` through ``response.content_part.added``."""
        events = self._opening(previous_item_id, announced)
        part = {"type": "audio", "transcript": ""} if self._opts.audio else {
            "type": "text", "text": ""}
        events.append(server_event("response.content_part.added", **self._where(), part=part))
        return events

    # -- parrot chunks -----------------------------------------------------------------

    def has_more(self) -> bool:
        """Whether the driver should ask for another chunk (echo responses never do)."""
        return self._plan is not None and not self.finished

    def next_chunk(self, previous_item_id: str | None) -> ResponseChunk:
        """The next chunk of a planned response; the last one carries the closing events."""
        assert self._plan is not None and not self.finished
        if not self._opts.audio:
            events = [self._text_delta(word) for word in self._words]
            self._sent_words = len(self._words)
            events += self._finish_planned(previous_item_id)
            return ResponseChunk(self.id, events, 0, True)
        audio = self._plan.audio
        piece = audio[self._sent_bytes:self._sent_bytes + self._delta_bytes]
        self._sent_bytes += len(piece)
        total = max(1, -(-len(audio) // self._delta_bytes))
        done = -(-self._sent_bytes // self._delta_bytes)
        # Transcript words run slightly ahead of the audio, as the hosted service's do.
        due = min(len(self._words), -(-len(self._words) * done // total))
        events = [self._transcript_delta(w) for w in self._words[self._sent_words:due]]
        self._sent_words = due
        if piece:
            events.append(self.audio_delta(piece))
        final = self._sent_bytes >= len(audio)
        if final:
            events += self._finish_planned(previous_item_id)
        return ResponseChunk(self.id, events, len(piece) // BYTES_PER_MS, final)

    def _finish_planned(self, previous_item_id: str | None) -> list[Event]:
        """Close a planned reply once all of it is out: ``completed``, or ``incomplete``
        when ``max_output_tokens`` cut it short."""
        if self.cut:
            return self.finish("incomplete", "max_output_tokens", previous_item_id)
        return self.finish("completed", None, previous_item_id)

    # -- echo --------------------------------------------------------------------------

    def audio_delta(self, pcm: bytes, encoded: str | None = None) -> Event:
        """A ``response.output_audio.delta`` for ``pcm``, counted as generated audio.
        ``encoded`` reuses the base64 the client sent, when echoing it back verbatim."""
        self.item.output_bytes += len(pcm)
        delta = encoded if encoded is not None else base64.b64encode(pcm).decode("ascii")
        return server_event("response.output_audio.delta", **self._where(), delta=delta)

    # -- closing -----------------------------------------------------------------------

    def finish(self, status: str, reason: str | None,
               previous_item_id: str | None) -> list[Event]:
        """Close the part, the item and the response; ``reason`` goes in status_details."""
        text = self._spoken_text()
        where = self._where()
        if self._opts.audio:
            content = {"type": "output_audio", "transcript": text}
            events = [
                server_event("response.output_audio.done", **where),
                server_event("response.output_audio_transcript.done", **where, transcript=text),
                server_event("response.content_part.done", **where,
                             part={"type": "audio", "transcript": text}),
            ]
        else:
            content = {"type": "output_text", "text": text}
            events = [
                server_event("response.output_text.done", **where, text=text),
                server_event("response.content_part.done", **where,
                             part={"type": "text", "text": text}),
            ]
        self.item.data["status"] = "completed" if status == "completed" else "incomplete"
        self.item.data["content"] = [content]
        input_ms = self._plan.input_audio_ms if self._plan is not None else 0
        usage = _usage(input_ms, self.item.audio_ms(), len(text.split()))
        return events + self._closing(status, reason, previous_item_id, usage)

    # -- helpers -----------------------------------------------------------------------

    def _spoken_text(self) -> str:
        return "".join(self._words[:self._sent_words])

    def _transcript_delta(self, word: str) -> Event:
        return server_event("response.output_audio_transcript.delta", **self._where(),
                            delta=word)

    def _text_delta(self, word: str) -> Event:
        return server_event("response.output_text.delta", **self._where(), delta=word)

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0,
                "content_index": 0}


class FunctionCallResponse(BaseResponse):
    """A response that calls a function: one ``function_call`` item, whose arguments
    stream as ``response.function_call_arguments.delta`` events, and no audio."""

    def __init__(self, name: str, arguments: str, options: ResponseOptions,
                 response_id: str | None = None) -> None:
        super().__init__(function_call_item(new_item_id(), name, random_id("call_", 16)),
                         options, response_id)
        self._arguments = arguments
        self._sent = 0  # characters of the arguments sent so far

    @property
    def call_id(self) -> str:
        """The call's id, which the client's ``function_call_output`` will name."""
        return str(self.item.data["call_id"])

    def start(self, previous_item_id: str | None, *, announced: bool = False) -> list[Event]:
        """``response.created`` through ``conversation.item.added`` (no content parts:
        a function call has none)."""
        return self._opening(previous_item_id, announced)

    def has_more(self) -> bool:
        """Whether the arguments are still to be sent."""
        return not self.finished

    def next_chunk(self, previous_item_id: str | None) -> ResponseChunk:
        """Every argument delta and the closing events: there is no audio to pace."""
        assert not self.finished
        where = self._where()
        budget = token_budget(self._opts.max_output_tokens)
        arguments = self._arguments
        cut = budget is not None and -(-len(arguments) // CHARS_PER_TOKEN) > budget
        if cut:  # max_output_tokens ends the arguments where its tokens run out
            arguments = arguments[:(budget or 0) * CHARS_PER_TOKEN]
        events = [server_event("response.function_call_arguments.delta", **where, delta=piece)
                  for piece in _pieces(arguments, ARGUMENT_DELTA_CHARS)]
        self._sent = len(arguments)
        if cut:
            events += self.finish("incomplete", "max_output_tokens", previous_item_id)
        else:
            events += self.finish("completed", None, previous_item_id)
        return ResponseChunk(self.id, events, 0, True)

    def finish(self, status: str, reason: str | None,
               previous_item_id: str | None) -> list[Event]:
        """``response.function_call_arguments.done`` (sent even for a cancelled call, as
        the hosted service does, with what was sent), then the item and the response."""
        arguments = self._arguments[:self._sent]
        self.item.data["status"] = "completed" if status == "completed" else "incomplete"
        self.item.data["arguments"] = arguments
        events = [server_event("response.function_call_arguments.done", **self._where(),
                               name=self.item.data["name"], arguments=arguments)]
        usage = _usage(0, 0, -(-len(arguments) // CHARS_PER_TOKEN))
        return events + self._closing(status, reason, previous_item_id, usage)

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0,
                "call_id": self.call_id}


def _pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters (one piece, maybe empty, at least)."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [text]


def _usage(input_audio_ms: int, output_audio_ms: int, output_text: int) -> dict[str, Any]:
    """Token counts in the hosted service's shape; this server only estimates them."""
    input_audio = -(-input_audio_ms // INPUT_MS_PER_TOKEN)
    output_audio = -(-output_audio_ms // OUTPUT_MS_PER_TOKEN)
    total_in, total_out = input_audio, output_audio + output_text
    return {
        "total_tokens": total_in + total_out,
        "input_tokens": total_in,
        "output_tokens": total_out,
        "input_token_details": {
            "text_tokens": 0, "audio_tokens": input_audio, "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                      "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
    }


def _with_input(usage: dict[str, Any], text: int, audio: int) -> dict[str, Any]:
    """``usage`` with its input tokens replaced by a context's."""
    out = dict(usage)
    out["input_tokens"] = text + audio
    out["total_tokens"] = text + audio + int(usage["output_tokens"])
    out["input_token_details"] = {**usage["input_token_details"], "text_tokens": text,
                                  "audio_tokens": audio}
    return out


def word_pieces(text: str) -> list[str]:
    """``text`` split into deltas that concatenate back to it: each word with the space
    before it."""
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]] if text else []


def _rate_limits() -> list[dict[str, Any]]:
    # A local server has no limits; report generous constants in the hosted shape.
    return [
        {"name": "requests", "limit": 10000, "remaining": 9999, "reset_seconds": 0.006},
        {"name": "tokens", "limit": 1000000, "remaining": 999000, "reset_seconds": 0.06},
    ]


def server_event(kind: str, **fields: Any) -> Event:
    """A server event of type ``kind`` with a fresh event_id and ``fields``."""
    event: Event = {"type": kind, "event_id": new_event_id()}
    event.update(fields)
    return event



def text_usage(output_text_tokens: int) -> dict[str, Any]:
    """Usage of a response that produced only text (a call's arguments, a request)."""
    return _usage(0, 0, output_text_tokens)


def text_pieces(text: str, size: int = ARGUMENT_DELTA_CHARS) -> list[str]:
    """``text`` as the deltas that stream it (one piece, maybe empty, at least)."""
    return _pieces(text, size)
