"""The floor every other layer stands on: tasks something owns, coroutines run inline,
token buckets, and the signature of webhooks.

- :mod:`.owned_task`: :class:`OwnedTask`, a background task started once, cancelled and
  awaited on close.
- :mod:`.inline`: :class:`InlineWriter`, writes run in the callback that wants them, a
  task taking over only when they must wait (and :func:`~.inline.resume`, how it does).
- :mod:`.token_bucket`: :class:`RateLimiter`, token buckets by key, in process.
- :mod:`.webhook_signature`: Standard Webhooks signatures (``whsec_`` secrets).
"""

from .inline import InlineWriter
from .owned_task import OwnedTask
from .token_bucket import RateLimiter

__all__ = ["InlineWriter", "OwnedTask", "RateLimiter"]
