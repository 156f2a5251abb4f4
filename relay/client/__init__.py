"""A headless client of the Realtime calls API: the ``relay call`` command, the end-to-end
tests and the benchmark's load use it, against the relay or any server of that API.

- :mod:`.handshake`: post an SDP offer, take the answer and the call id; hang up.
- :mod:`.call_client`: :class:`CallClient`, one call with its microphone, events and reply.
- :mod:`.media`: :class:`PcmSource` (a PCM microphone track), WAV in and out.
- :mod:`.cli`: ``relay call``.
"""

from .call_client import CallClient
from .handshake import CallAnswer, CallCreationFailed, create_call, hang_up, post_offer
from .pcm_source import PcmSource, read_wav, write_wav

__all__ = [
    "CallAnswer",
    "CallClient",
    "CallCreationFailed",
    "PcmSource",
    "create_call",
    "hang_up",
    "post_offer",
    "read_wav",
    "write_wav",
]
