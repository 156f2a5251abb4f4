"""When an upstream session that closed under a call is worth replacing (every family).

The driver opens a new upstream session for a call whose socket closed under it, and the
family's core rebuilds the session on it, only when the close looks transient; this is
that rule, shared by the Realtime and GPT-Live cores.
"""

from __future__ import annotations

#: WebSocket close codes after which a new session is worth opening: no close frame (the
#: network or the server process died: 1006), going away (1001: a restart, or the hosted
#: service's 60-minute limit), and the server-side failures that invite a retry (1011
#: internal error, 1012 restart, 1013 try again later, 1014 bad gateway). A normal close
#: (1000), a policy or size violation, and the application's own 4xxx codes (an
#: unusable key, a refused API shape) would only happen again.
REOPEN_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def worth_reopening(close_code: int | None, expired: bool) -> bool:
    """Whether a session that closed with ``close_code`` (None: none received) is worth
    replacing; ``expired``: it said it reached its longest duration first."""
    return expired or close_code is None or close_code in REOPEN_CLOSE_CODES
