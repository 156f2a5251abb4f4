"""The local assistant's words and the speech work it asks for, without I/O.

The session cannot recognize or synthesize speech itself (that is slow, and belongs in a
worker): it asks for it with a :data:`SpeechJob`, which its driver runs and hands back.
This module holds those jobs, what the assistant says (:func:`reply`), and the
``conversation.item.input_audio_transcription.*`` events a transcript becomes.

The events follow the hosted service: ``whisper-1`` sends the whole transcript in one
``delta``, the ``gpt-4o-*transcribe`` models a delta per word; then ``completed``, with
usage billed by duration (``whisper-1``) or by tokens (the others). An empty transcript
(silence, noise) is a ``completed`` with ``""`` and no delta. When the session's
``include`` asks for ``item.input_audio_transcription.logprobs``, each delta carries the
log probabilities of its words and ``completed`` all of them: a token here is a word (the
recognizer's unit), its log probability the recognizer's posterior for it.
Whatever model the session names, the local recognizer is what listens
(:mod:`.recognizer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...protocol.events import Event
from .conversation import Item
from .response import CHARS_PER_TOKEN, INPUT_MS_PER_TOKEN, server_event, word_pieces
from .tools import latest_user_message, user_text

#: What a session that asks for transcription without naming a model gets.
DEFAULT_TRANSCRIPTION_MODEL = "whisper-1"
NOTHING_HEARD = "I have not heard anything from you yet."
NOT_CAUGHT = "Sorry, I did not catch that."



@dataclass(frozen=True, slots=True)
class Transcribe:
    """Recognize the words of a user item's audio (24 kHz PCM16). ``model`` is the
    transcription model the session named, or None when only the assistant wants the
    words (no transcription events then)."""

    item_id: str
    audio: bytes
    model: str | None
    content_index: int = 0
    #: The session's ``include`` asks for the words' log probabilities.
    logprobs: bool = False


@dataclass(frozen=True, slots=True)
class Synthesize:
    """Speak ``text`` for the pending response ``response_id``: the eSpeak ``voice`` at
    ``rate`` words per minute, as 24 kHz PCM16."""

    response_id: str
    text: str
    voice: str
    rate: int


SpeechJob = Transcribe | Synthesize


def transcription_model(session: Mapping[str, Any]) -> str | None:
    """The transcription model a session asks for (``audio.input.transcription``), or
    None when it asks for none."""
    setting = session["audio"]["input"].get("transcription")
    if not isinstance(setting, Mapping):
        return None
    model = setting.get("model")
    return model if isinstance(model, str) and model else DEFAULT_TRANSCRIPTION_MODEL


def reply(items: Iterable[Item]) -> str:
    """What the assistant says to the user's latest message among ``items``: its words
    back ("You said: ..."), typed or transcribed."""
    latest = latest_user_message(items)
    if latest is None:
        return NOTHING_HEARD
    words = " ".join(user_text(latest).split())
    return f"You said: {words}" if words else NOT_CAUGHT


def transcription_events(job: Transcribe, transcript: str, audio_ms: int,
                         scored: list[tuple[str, float]] | None = None) -> list[Event]:
    """The ``delta`` events and the ``completed`` event of a finished transcription
    (``scored``: the words with their log probabilities, when the job asked for them)."""
    assert job.model is not None
    where = {"item_id": job.item_id, "content_index": job.content_index}
    whisper = job.model.startswith("whisper")
    pieces = [transcript] if whisper else word_pieces(transcript)
    probs = _logprobs(pieces, scored) if job.logprobs else None
    events = []
    for index, piece in enumerate(pieces):
        if piece:
            extra = {"logprobs": probs[index]} if probs is not None else {}
            events.append(server_event("conversation.item.input_audio_transcription.delta",
                                       **where, delta=piece, **extra))
    usage = _duration_usage(audio_ms) if whisper else _token_usage(audio_ms, transcript)
    extra = {"logprobs": [p for piece in probs for p in piece]} if probs is not None else {}
    events.append(server_event("conversation.item.input_audio_transcription.completed",
                               **where, transcript=transcript, usage=usage, **extra))
    return events


def _logprobs(pieces: list[str], scored: list[tuple[str, float]] | None,
              ) -> list[list[dict[str, Any]]]:
    """For each delta piece, the log probabilities of the words in it, in the hosted
    shape (``token``, ``logprob``, ``bytes``); a token is a word with the space before it."""
    queue = list(scored or ())
    out: list[list[dict[str, Any]]] = []
    for piece in pieces:
        entries = []
        for index, word in enumerate(piece.split(" ")):
            if not word:
                continue
            token = word if index == 0 and not piece.startswith(" ") else " " + word
            logprob = queue.pop(0)[1] if queue else 0.0
            entries.append({"token": token, "logprob": round(logprob, 6),
                            "bytes": list(token.encode())})
        out.append(entries)
    return out


def transcription_failed_event(job: Transcribe, message: str) -> Event:
    """``conversation.item.input_audio_transcription.failed`` for ``job``."""
    return server_event("conversation.item.input_audio_transcription.failed",
                        item_id=job.item_id, content_index=job.content_index,
                        error={"type": "server_error", "code": "speech_failed",
                               "message": message, "param": None})


def _duration_usage(audio_ms: int) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}


def _token_usage(audio_ms: int, transcript: str) -> dict[str, Any]:
    audio_tokens = -(-audio_ms // INPUT_MS_PER_TOKEN)
    text_tokens = -(-len(transcript) // CHARS_PER_TOKEN)
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": text_tokens,
        "total_tokens": audio_tokens + text_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
    }
