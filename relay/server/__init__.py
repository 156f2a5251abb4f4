"""The HTTP side: the aiohttp app factory, its handlers, and the calls it keeps.

- :mod:`.app`: :func:`create_app`, the middlewares and the shared endpoints (health,
  readiness, statistics, metrics, the demo page); :mod:`.app_state` its typed keys and
  the forwarding of a follow-up to its call's owner.
- :mod:`.realtime_api`: the Realtime API's endpoints (calls, client secrets, sidebands);
  :mod:`.live_api`: GPT-Live's (sessions, their controls and sidebands, sealed keys);
  :mod:`.call_admission`: what both families' create handlers check and register;
  :mod:`.live_websocket`: GPT-Live's primary WebSocket (``GET /v1/live/sessions``).
- :mod:`.call_driver`: :class:`CallDriver`, one call's I/O and lifecycle around its
  protocol core; :mod:`.call_view` the API's view of it; :mod:`.registry` the live calls.
- :mod:`.websocket_session`: one bridged WebSocket session's I/O around either family's
  WebSocket core; :mod:`.websocket_serving` the admission and serving both handlers share.
- :mod:`.auth`, :mod:`.client_secrets`, :mod:`.requests`: keys, ``ek_`` secrets, request
  parsing; :mod:`.sideband`, :mod:`.agent`: controllers beside a call; :mod:`.drain`,
  :mod:`.readiness`, :mod:`.loop_lag`, :mod:`.prometheus`, :mod:`.memory`: operations.
- :mod:`.serve`: :func:`run`, ``relay serve`` until it is told to stop.
"""

from .app import create_app
from .call_driver import CallDriver
from .registry import CallRegistry
from .serve import run

__all__ = ["CallDriver", "CallRegistry", "create_app", "run"]
