"""The model side: the Realtime WebSocket client, and the embedded local Realtime server.

What the embedded server can answer with is named here, in a module that imports nothing,
so settings and the command line can name the modes without loading the server.
"""

from typing import Literal

#: What the embedded upstream answers with: a spoken reply to what it heard (``assistant``:
#: "You said: ...", needs the ``speech`` extra, else it parrots), the user's words played
#: back (``parrot``), or every input chunk returned at once as output audio (``echo``,
#: for benchmarks).
LocalMode = Literal["assistant", "parrot", "echo"]
LOCAL_MODES: tuple[LocalMode, ...] = ("assistant", "parrot", "echo")
#: What ``relay serve`` and ``relay upstream`` run when not told: what a newcomer wants
#: to hear. The server classes themselves default to ``parrot``, which needs nothing.
DEFAULT_LOCAL_MODE: LocalMode = "assistant"
