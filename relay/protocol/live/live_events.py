"""GPT-Live events as plain dicts: server events, the Live ``error`` shape, and which
client events each kind of connection may send.

A Live ``error`` differs from a Realtime one: the client command at fault is named by
``client_event_id`` (in ``error`` and at the top level), not ``event_id``.
"""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequest, RelayError
from ..events import Event, new_event_id

#: Client events of the primary WebSocket (``openai.types.live.ClientEvent``).
PRIMARY_CLIENT_EVENTS = frozenset({
    "session.start", "session.update", "session.input_audio.append",
    "session.input_audio.mute", "session.input_audio.unmute",
    "session.output_audio.fixture.play", "session.instructions.append",
    "session.thinking.append", "session.commentary.append", "decision.create",
    "decision.item.create", "decision.item.delete", "response.item.create",
    "response.create", "session.close",
})
#: Client events of a sideband (``ConnectClientEvent``): no start, no audio, plus DTMF.
SIDEBAND_CLIENT_EVENTS = (PRIMARY_CLIENT_EVENTS
                          - {"session.start", "session.input_audio.append"}
                          ) | {"transport.dtmf.send"}
#: What a WebRTC data channel may send at most: the sideband's set without SIP's DTMF
#: (its audio is the RTP track; creating the session already started it).
DATA_CHANNEL_CLIENT_EVENTS = SIDEBAND_CLIENT_EVENTS - {"transport.dtmf.send"}

#: Server events of a Live session (``ServerEvent`` and ``ConnectServerEvent``).
SERVER_EVENTS = frozenset({
    "session.started", "session.updated", "session.resumed", "session.paused",
    "session.input_audio.muted", "session.input_audio.unmuted",
    "session.output_audio.fixture.playing", "session.output_audio.fixture.played",
    "session.instructions.appended", "session.thinking.appended",
    "session.commentary.appended", "session.input_audio.append",
    "session.output_audio.delta", "session.input_transcript.delta",
    "session.output_transcript.delta", "session.delegation.created", "decision.event",
    "decision.completed",
    "decision.item.created", "decision.item.deleted", "response.event",
    "session.usage.updated", "session.closed", "error", "info",
    "transport.dtmf.received", "transport.dtmf.send", "transport.dtmf.sent",
    "transport.ringing", "transport.answered", "transport.failed",
})
#: Every event type of the Live protocol, either way (metrics label values).
EVENT_TYPES = SERVER_EVENTS | SIDEBAND_CLIENT_EVENTS | PRIMARY_CLIENT_EVENTS


def live_event(kind: str, **fields: Any) -> Event:
    """A Live server event of type ``kind`` with a fresh ``event_id`` and ``fields``."""
    event: Event = {"type": kind, "event_id": new_event_id()}
    event.update(fields)
    return event


#: What a person reads in the ``info`` that carries each of the relay's own notices.
NOTICE_MESSAGES = {
    "recording_started": "This session is recorded (its audio and events); the operator "
                         "downloads the recording once it ends.",
}
#: The prefix of the relay's own event types (a Realtime client gets them as they are).
RELAY_PREFIX = "relay."


def live_notice(event: Event) -> Event:
    """The relay's own notice ``event`` (``relay.recording.started``) as GPT-Live carries
    notices: an ``info`` whose ``code`` names it (``recording_started``), with a message
    and the notice's own fields. Any other event is returned as it is."""
    kind = event["type"]
    if not kind.startswith(RELAY_PREFIX):
        return event
    code = kind[len(RELAY_PREFIX):].replace(".", "_")
    fields = {k: v for k, v in event.items() if k not in ("type", "event_id", "code")}
    message = NOTICE_MESSAGES.get(code, f"A notice of the relay: {code}.")
    return live_event("info", **{**fields, "code": code, "message": message})


def live_error_event(error: RelayError, client_event_id: str | None = None) -> Event:
    """The Live ``error`` server event for ``error``; ``client_event_id`` names the client
    command at fault (when it carried an ``event_id``)."""
    body: dict[str, Any] = {"type": error.type, "code": error.code or "error",
                            "message": error.message, "param": error.param}
    event = live_event("error", error=body)
    if client_event_id is not None:
        body["client_event_id"] = client_event_id
        event["client_event_id"] = client_event_id
    return event


def check_client_event(kind: str, known: frozenset[str], *, connection: str) -> None:
    """Refuse, with the reason, a client event type that ``connection`` (whose client
    events are ``known``) may not send: another connection's, or none of the protocol's."""
    if kind in known:
        return
    if kind in PRIMARY_CLIENT_EVENTS | SIDEBAND_CLIENT_EVENTS:
        raise InvalidRequest(f"'{kind}' cannot be sent on {connection}.",
                             code="invalid_value", param="type")
    raise InvalidRequest(f"Unknown Live client event type '{kind}'.",
                         code="invalid_value", param="type")


def client_event_id(event: Event) -> str | None:
    """The ``event_id`` a client command carried, if it is a string."""
    value = event.get("event_id")
    return value if isinstance(value, str) else None
