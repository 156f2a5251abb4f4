"""The embedded local Realtime server: the relay's default, offline upstream.

A real WebSocket server speaking the Realtime API (GA shape) that needs no model: it parrots
each user turn back (or, in echo mode, returns input audio at once). The protocol lives in
the sans-I/O :class:`LocalSession`; :class:`LocalRealtimeServer` is its asyncio driver.

It also calls function tools, deterministically, so agents with tools run offline (the
full rules are in :mod:`.tools`, the arguments' in :mod:`.schema`):

- ``tool_choice`` ``{"type": "function", "name": N}`` calls N; ``"required"`` calls the
  first function tool; ``"none"`` never calls; ``"auto"`` calls the first function tool
  whose whole name (any case) appears in the user's latest text message, and otherwise
  answers as without tools. ``response.create`` may override ``tools`` and ``tool_choice``;
  tools whose type is not ``function`` are ignored.
- A call is the hosted event sequence: ``response.created``, ``response.output_item.added``
  (a ``function_call`` item, in progress), ``conversation.item.added``,
  ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``,
  ``conversation.item.done``, ``response.output_item.done``, ``response.done``; no audio.
  Its arguments validate against the tool's ``parameters`` (required properties from
  ``const``, ``enum``, ``default`` or ``examples``, else a placeholder of their type).
- After ``conversation.item.create`` of a ``function_call_output`` (whose ``call_id`` must
  name a call in the conversation) and a ``response.create``, the answer says it used the
  tool and includes the output: "I used get_weather: Sunny, 21 C", spoken (its transcript,
  over a tone) or as text.
- Echo mode ignores tools.
"""

from .server import LocalRealtimeServer
from .session import LocalSession

__all__ = ["LocalRealtimeServer", "LocalSession"]
