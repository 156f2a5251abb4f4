"""The GPT-Live protocol family, without I/O (docs/LIVE_PROTOCOL.md has its wire).

- :mod:`.live_core`: :class:`LiveCore`, one GPT-Live session's state machine behind the
  call driver's :class:`~relay.protocol.call_protocol.CallProtocol`: what goes upstream
  (``session.start``, the microphone), to the data channel (under the frontend's
  permissions) and to the sidebands (with the media reflected).
- :mod:`.primary_core`: :class:`LiveWebSocketCore`, a client's primary WebSocket bridged
  to an upstream one (``session.start`` checked, sealed and locked; the commands it may
  send).
- :mod:`.live_config`: a Live configuration checked strictly, resolved, updated; the
  frontend's event permissions; the operator's locked fields.
- :mod:`.live_events`: Live events as dicts, the Live ``error`` shape, which commands each
  kind of connection may send.
- :mod:`.wake`: the wake policy and idle timeout the relay keeps itself: which microphone
  audio goes upstream, when the session pauses and wakes, its usage's active and paused
  seconds.
- :mod:`.live_restore`: the conversation as text for a new upstream session (a restore,
  or a fork: from a recording's event lines).
- :mod:`.live_fork`: a fork's configuration, the stored one with the request's overrides.

:class:`LiveCore` is imported from :mod:`.live_core` itself: this face stays free of it
because the shared per-call measures (:mod:`relay.protocol.call_measures`) read the Live
event types from here, and the core reads those measures.
"""

from .live_config import check_config
from .live_events import EVENT_TYPES, live_error_event, live_event

__all__ = ["EVENT_TYPES", "check_config", "live_error_event", "live_event"]
