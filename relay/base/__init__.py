"""The floor every other layer stands on: tasks something owns, token buckets, and the
signature of webhooks.

- :mod:`.owned_task`: :class:`OwnedTask`, a background task started once, cancelled and
  awaited on close.
- :mod:`.token_bucket`: :class:`RateLimiter`, token buckets by key, in process.
- :mod:`.webhook_signature`: Standard Webhooks signatures (``whsec_`` secrets).
"""

from .owned_task import OwnedTask
from .token_bucket import RateLimiter

__all__ = ["OwnedTask", "RateLimiter"]
