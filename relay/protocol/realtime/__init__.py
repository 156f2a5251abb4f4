"""The Realtime API's protocol family, without I/O.

- :mod:`.call_core`: :class:`CallCore`, one call's state machine: what goes to the client's
  ``oai-events`` channel, the sidebands and the upstream; the client's session story.
- :mod:`.playback`: the assistant's audio from deltas to frames, the
  ``output_audio_buffer.*`` events only WebRTC has, barge-in and exact truncation.
- :mod:`.session_config`: the GA session shape (flat aliases translated, formats pinned,
  the full effective session, model choice).
- :mod:`.session_updates`: who asked for each ``session.update``.
- :mod:`.client_checks`: what a client event must pass, on a call and a WebSocket session.
- :mod:`.policy`: the operator's locked fields and the layering of sessions.
"""

from .call_core import CallCore
from .policy import Policy, SessionRules
from .session_config import DEFAULT_MODEL, Session, effective_session, normalize_session

__all__ = [
    "DEFAULT_MODEL",
    "CallCore",
    "Policy",
    "Session",
    "SessionRules",
    "effective_session",
    "normalize_session",
]
