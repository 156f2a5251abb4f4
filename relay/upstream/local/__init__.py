"""The embedded local Realtime server: the relay's default, offline upstream.

A real WebSocket server speaking the Realtime API (GA shape) that needs no model. The
protocol lives in the sans-I/O :class:`LocalSession`; :class:`LocalRealtimeServer` is its
asyncio driver. It answers in one of three modes:

- ``assistant`` (``relay serve``'s default): hears each user turn and says it back, in
  words: "You said: ...". Recognition is pocketsphinx's US English model
  (:mod:`.recognizer`), whatever transcription model the session names; the voice is
  eSpeak NG (:mod:`.synthesizer`), with the session's ``voice`` mapped onto eSpeak's and
  its ``speed`` onto words per minute. Both run in worker processes (:mod:`.workers`), so
  a long utterance never stalls another call's audio. The response is announced at once
  (``response.created``); its item follows when the words are known and spoken. Both
  engines ship in the ``speech`` extra's wheels; without it, the server says so once and
  parrots instead.
- ``parrot``: plays each user turn's audio back (its transcript says how long it was).
- ``echo``: returns every input chunk at once as output audio (for benchmarks).

Input transcription (``audio.input.transcription``) works in the assistant and parrot
modes: each committed turn gets ``conversation.item.input_audio_transcription.delta``
events and ``.completed`` (or ``.failed``), as the hosted service sends them (details in
:mod:`.assistant`).

It also calls function tools, deterministically, so agents with tools run offline (the
full rules are in :mod:`.tools`, the arguments' in :mod:`.schema`):

- ``tool_choice`` ``{"type": "function", "name": N}`` calls N; ``"required"`` calls the
  first function tool; ``"none"`` never calls; ``"auto"`` calls the first function tool
  that the user's latest message names (its whole name in any case, or its words:
  ``get_weather`` in "what is the weather"), typed or in its transcript, and otherwise
  answers as without tools. ``response.create`` may override ``tools`` and
  ``tool_choice``. MCP tools are listed and called on their servers (:mod:`.mcp_tools`).
- A call is the hosted event sequence: ``response.created``, ``response.output_item.added``
  (a ``function_call`` item, in progress), ``conversation.item.added``,
  ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``,
  ``conversation.item.done``, ``response.output_item.done``, ``response.done``; no audio.
  Its arguments validate against the tool's ``parameters`` (required properties from
  ``const``, ``enum``, ``default`` or ``examples``, else a placeholder of their type).
- After ``conversation.item.create`` of a ``function_call_output`` (whose ``call_id`` must
  name a call in the conversation) and a ``response.create``, the answer says it used the
  tool and includes the output: "I used get_weather: Sunny, 21 C", spoken by the
  assistant, read over a tone by the parrot (in its transcript), or as text.
- Echo mode ignores tools.

Every other session field is honoured or refused as the hosted API refuses it
(:mod:`.field_checks`): ``idle_timeout_ms`` (:mod:`.idle_clock`), ``max_output_tokens``
(:func:`.response.fit_plan`), ``noise_reduction`` (:mod:`.denoise`), ``truncation``
(:mod:`.truncation`), ``speed`` (words per minute, or the parrot's resampling).

The same server speaks GPT-Live at ``/v1/live/sessions`` (:mod:`.live`): the same
detector, recogniser and voice, transcript deltas on the session timeline, real-time output
that the user can talk over, and client delegation.
"""

from .live import LiveLocalSession
from .local_session import LocalSession
from .server import LocalRealtimeServer

__all__ = ["LiveLocalSession", "LocalRealtimeServer", "LocalSession"]
