"""The embedded server's GPT-Live face: ``/v1/live/sessions`` on the same WebSocket server
as its Realtime face, run by the same connection driver, hearing with the same detector
and recogniser and speaking with the same voice (:mod:`.live_session` has the rules)."""

from .live_session import LiveLocalSession

__all__ = ["LiveLocalSession"]
