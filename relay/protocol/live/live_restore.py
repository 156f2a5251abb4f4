"""What a new upstream Live session needs to carry a GPT-Live call on: its configuration
and its conversation so far, as far as ``session.start`` lets a client supply them.

GPT-Live has no command that creates conversation items on a running session; what a
client may hand a new session is its start configuration, whose ``input`` is a text-only
history (developer, user and assistant messages of one text part each, at most 128, within
a token limit: 8,192 by default). So :class:`LiveHistory` keeps the conversation as text,
from what went by:

- the user's words (``session.input_transcript.delta``): one user message per turn;
- the model's words (``session.output_transcript.delta``): one assistant message per
  turn, the words it sent (an interrupted reply's transcript covers only what was sent);
- the context the session took (``session.instructions.append``, ``.thinking.append``,
  ``.commentary.append`` sent upstream and not refused): one developer message each.

A turn ends when the other party speaks, or context is appended. :func:`restore_start`
turns the call's start configuration, the session's current ``delegation`` and
``triggers`` (all ``session.update`` may change) and that history into the ``session.start``
that rebuilds the session: the configuration's own ``input`` first, then the newest
messages that fit (:data:`MAX_HISTORY_MESSAGES` in all, :data:`MAX_HISTORY_CHARS` of text
restored). Audio is not restored: the new session reads the words.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..events import Event

#: Most messages a ``session.start``'s ``input`` may hold (the hosted service's limit).
MAX_HISTORY_MESSAGES = 128
#: Most characters of restored history (the hosted limit is 8,192 tokens by default; a
#: token is about four characters of English): the oldest messages go first.
MAX_HISTORY_CHARS = 16_000
#: Prefix of the ``event_id`` of a restore's ``session.start``.
RESTORE_PREFIX = "relay_restore_"
#: Client commands whose content the session keeps as context (a developer message).
CONTEXT_COMMANDS = ("session.instructions.append", "session.thinking.append",
                    "session.commentary.append")
#: The transcript events that carry each party's words, and the part type each becomes.
_TRANSCRIPTS = {"session.input_transcript.delta": ("user", "input_text"),
                "session.output_transcript.delta": ("assistant", "output_text")}


@dataclass
class _Message:
    role: str
    text: str
    #: The client command that added it (context only), while it may still be refused.
    command_id: str | None = None


class LiveHistory:
    """The conversation of one GPT-Live call as text, across its upstream sessions."""

    def __init__(self) -> None:
        self._messages: list[_Message] = []

    def __len__(self) -> int:
        return len(self._messages)

    def observe(self, event: Mapping[str, Any]) -> None:
        """Follow one upstream server event: a transcript delta adds to its party's turn,
        an ``error`` naming a context command takes that command's context back."""
        kind = event.get("type")
        party = _TRANSCRIPTS.get(kind)  # type: ignore[arg-type]
        if party is not None:
            delta = event.get("delta")
            if isinstance(delta, str) and delta:
                self._words(party[0], delta)
        elif kind == "error":
            body = event.get("error")
            refused = event.get("client_event_id")
            if refused is None and isinstance(body, Mapping):
                refused = body.get("client_event_id")
            if isinstance(refused, str):
                self._messages = [m for m in self._messages if m.command_id != refused]

    def context_sent(self, command: Mapping[str, Any]) -> None:
        """A context command (:data:`CONTEXT_COMMANDS`) went upstream: keep its content."""
        content = command.get("content")
        if command.get("type") in CONTEXT_COMMANDS and isinstance(content, str) \
                and content.strip():
            cid = command.get("event_id")
            self._messages.append(_Message("developer", content.strip(),
                                           cid if isinstance(cid, str) else None))

    def messages(self) -> list[dict[str, Any]]:
        """Every message kept, oldest first, as ``session.start`` takes them."""
        return [_initial_item(m) for m in self._messages if m.text.strip()]

    def _words(self, role: str, delta: str) -> None:
        last = self._messages[-1] if self._messages else None
        if last is not None and last.role == role and last.command_id is None:
            last.text += delta
        else:
            self._messages.append(_Message(role, delta))


def _initial_item(message: _Message) -> dict[str, Any]:
    part = "output_text" if message.role == "assistant" else "input_text"
    return {"type": "message", "role": message.role,
            "content": [{"type": part, "text": message.text.strip()}]}


@dataclass
class RestoreStart:
    """The ``session.start`` that rebuilds a call's session, and what it carries."""

    event: Event
    #: Messages of the call's history it restores, and those left out (no room).
    restored: int
    dropped: int


def with_history(config: Mapping[str, Any], session: Mapping[str, Any] | None,
                 history: list[dict[str, Any]]) -> tuple[dict[str, Any], int, int]:
    """``config`` (a start configuration) carrying on a conversation: the ``delegation``
    and ``triggers`` of ``session`` (the session as last updated; None: never updated),
    and ``input`` = the configuration's own ``input`` first, then the newest messages of
    ``history`` (:meth:`LiveHistory.messages`) that fit (:data:`MAX_HISTORY_MESSAGES` in
    all, :data:`MAX_HISTORY_CHARS` of history). Returns it, the messages of ``history`` it
    carries and those left out (no room)."""
    restored = copy.deepcopy(dict(config))
    if session is not None:
        for key in ("delegation", "triggers"):
            if key in session:
                restored[key] = copy.deepcopy(session[key])
    own = list(restored.get("input") or [])
    room = max(MAX_HISTORY_MESSAGES - len(own), 0)
    kept: list[dict[str, Any]] = []
    chars = 0
    for item in reversed(history):
        size = sum(len(p["text"]) for p in item["content"])
        if len(kept) >= room or chars + size > MAX_HISTORY_CHARS:
            break
        kept.append(item)
        chars += size
    kept.reverse()
    if own or kept:
        restored["input"] = own + kept
    return restored, len(kept), len(history) - len(kept)


def restore_start(config: Mapping[str, Any], session: Mapping[str, Any] | None,
                  history: list[dict[str, Any]], number: int) -> RestoreStart:
    """The ``session.start`` for a new upstream session of a call that started with
    ``config`` (the WebSocket form the relay sent), whose session the upstream last
    described as ``session`` after an update (None: never updated), with ``history``
    (:meth:`LiveHistory.messages`); ``number`` makes its ``event_id`` unique."""
    restored, kept, dropped = with_history(config, session, history)
    event: Event = {"type": "session.start", "event_id": f"{RESTORE_PREFIX}{number}",
                    "session": restored}
    return RestoreStart(event, kept, dropped)


@dataclass
class RecordedConversation:
    """What a recorded GPT-Live session leaves to a new one (a fork): its conversation as
    text, and its session as last updated (None: never updated)."""

    history: list[dict[str, Any]]
    session: dict[str, Any] | None


#: The recorded directions :func:`recorded_conversation` reads, and the event types.
RECORDED_DIRECTIONS = ("upstream_to_relay", "relay_to_upstream")
RECORDED_TYPES = frozenset({*_TRANSCRIPTS, "error", "session.updated", *CONTEXT_COMMANDS})


def recorded_conversation(records: Iterable[Mapping[str, Any]]) -> RecordedConversation:
    """The conversation of a recorded session, from its recording's event lines (each
    ``{"t", "dir", "event"}``, in order): built as the call built it
    (:class:`LiveHistory`): what the upstream said (transcripts, refusals of context), and
    the context the relay sent it. Lines of other directions or kinds are skipped."""
    history = LiveHistory()
    session: dict[str, Any] | None = None
    for record in records:
        event = record.get("event")
        if not isinstance(event, Mapping):
            continue
        direction = record.get("dir")
        if direction == "upstream_to_relay":
            history.observe(event)
            if event.get("type") == "session.updated" and isinstance(event.get("session"),
                                                                       Mapping):
                session = dict(event["session"])
        elif direction == "relay_to_upstream":
            history.context_sent(event)
    return RecordedConversation(history.messages(), session)
