"""What a Realtime client's event must pass before it goes upstream, on a WebRTC call and
on a WebSocket session alike: a transcription session takes no ``response.*``, a
``session.update`` cannot change the session's type, and the operator's locked fields
hold for a ``response.create``'s overrides (its ``session.update`` is checked by its
caller, who knows whether the sender is bound by them)."""

from __future__ import annotations

from ...errors import InvalidRequest
from ..events import Event
from .policy import Policy, check_session
from .session_config import TRANSCRIPTION, Session, normalize_session

#: Client events a transcription session refuses: it creates no responses, so it has
#: none to create, cancel or cut off.
RESPONSE_EVENTS = ("response.", "output_audio_buffer.")


def check_supported(kind: str, session_type: str) -> None:
    """Refuse a client event of type ``kind`` that a ``session_type`` session has no use
    for (:data:`RESPONSE_EVENTS` in a transcription session)."""
    if session_type == TRANSCRIPTION and kind.startswith(RESPONSE_EVENTS):
        raise InvalidRequest(
            f"{kind} is not supported in a transcription session: it transcribes the "
            "user's audio and creates no responses.",
            code="invalid_value", param="type")


def requested_update(event: Event, session_type: str, within: str) -> Session:
    """The session a ``session.update`` asks for, normalized, with the fixed ``type`` filled
    in when it leaves it out (partial updates are normal); refused when it has no session
    or changes the type of the ``within`` (``"call"``, ``"session"``)."""
    session = event.get("session")
    if not isinstance(session, dict):
        raise InvalidRequest("session.update needs a 'session' object",
                             code="missing_required_parameter", param="session")
    session = normalize_session({"type": session_type, **session})
    if session["type"] != session_type:
        raise InvalidRequest(
            f"session.type cannot change during a {within}: this {within} is a "
            f"{session_type} session.", code="invalid_value", param="session.type")
    return session


def check_response_overrides(event: Event, policy: Policy) -> None:
    """Refuse a ``response.create`` whose ``response`` overrides change a locked field (the
    overrides have a session's shape: flat aliases such as ``voice`` too)."""
    response = event.get("response")
    if isinstance(response, dict):
        check_session({**response, "type": "realtime"}, policy, "response")
