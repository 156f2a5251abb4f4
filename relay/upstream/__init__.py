"""The model side: the Realtime WebSocket client, and the embedded local Realtime server.

What the embedded server can answer with is named here, in a module that imports nothing,
so settings and the command line can name the modes without loading the server.
"""

from typing import Literal

#: What the embedded upstream answers with: the user's words played back (``parrot``), or
#: every input chunk returned at once as output audio (``echo``, for benchmarks).
LocalMode = Literal["parrot", "echo"]
LOCAL_MODES: tuple[LocalMode, ...] = ("parrot", "echo")
