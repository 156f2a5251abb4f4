"""Sans-I/O protocol: what every voice protocol family shares, and one folder per family.

- :mod:`.call_protocol`: :class:`CallProtocol`, what a call's driver needs of a family's
  core (the seam between families), and :class:`CoreFactory`.
- :mod:`.websocket_protocol`: :class:`WebSocketProtocol`, what a bridged WebSocket
  session's driver needs of a family's WebSocket core.
- :mod:`.events`: JSON events in and out, ids, the ``error`` event.
- :mod:`.channel`: what fits the client's data channel.
- :mod:`.flood`: per-party message size and rate limits.
- :mod:`.outboxes`: what waits for each party (the client's channel, each sideband, the
  upstream), and the client's messages held for a call's agent.
- :mod:`.redact`: masking secrets an upstream echoes.
- :mod:`.call_measures`: per-call counters, barge-in records and latencies.
- :mod:`.realtime`: the Realtime API (session shape, each call's state machine, barge-in
  and truncation, the operator's locked fields).
"""

from .call_measures import CallMeasures, CallStats, Truncation
from .call_protocol import CLIENT, CallProtocol, CoreFactory
from .events import Event, dumps, error_event, new_event_id, parse_event, random_id
from .flood import MessageLimits
from .redact import Redactor

__all__ = [
    "CLIENT",
    "CallMeasures",
    "CallProtocol",
    "CallStats",
    "CoreFactory",
    "Event",
    "MessageLimits",
    "Redactor",
    "Truncation",
    "dumps",
    "error_event",
    "new_event_id",
    "parse_event",
    "random_id",
]
