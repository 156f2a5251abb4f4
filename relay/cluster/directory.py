"""Where each owner id listens: the directory relays find each other's calls in.

An address is ``unix:<path>`` (a worker's socket in its supervisor's runtime directory) or
``http://HOST:PORT`` (a relay's internal listener, from Redis). Two implementations:

- :class:`WorkerDirDirectory`: the workers of one supervisor, no Redis. Each worker
  listens on ``<worker_dir>/<owner>.sock``; the socket's existence is the registration.
- :class:`RedisDirectory`: any number of machines. ``relay:owner:<id>`` holds the
  address, with a TTL each relay refreshes every third of it; a relay that dies stops
  refreshing and its entry, and so its calls, vanish within the TTL.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

import redis.asyncio as redis

from ..errors import RoutingUnavailable
from .outage import REDIS_ERRORS, RedisOutage

#: Prefix of the Redis keys of owners.
OWNER_KEY = "relay:owner:"


class Directory(Protocol):
    """Owner id → the address of the relay that owns its calls."""

    async def register(self, owner: str, address: str) -> None:
        """Say that ``owner`` listens at ``address``."""

    async def refresh(self, owner: str, address: str) -> None:
        """Say it again, before the entry expires."""

    async def unregister(self, owner: str) -> None:
        """Forget ``owner`` (its relay is stopping)."""

    async def lookup(self, owner: str) -> str | None:
        """Where ``owner`` listens, or None when no live relay has that id.
        Raises :class:`~relay.errors.RoutingUnavailable` when that cannot be known now."""


def socket_path(worker_dir: str, owner: str) -> Path:
    """The socket the worker ``owner`` listens on in ``worker_dir``."""
    return Path(worker_dir) / f"{owner}.sock"


class WorkerDirDirectory:
    """The workers of one supervisor, through the sockets in their shared directory."""

    def __init__(self, worker_dir: str) -> None:
        #: The supervisor's runtime directory.
        self.path = worker_dir

    async def register(self, owner: str, address: str) -> None:
        """Nothing to do: the worker's socket is its registration."""

    async def refresh(self, owner: str, address: str) -> None:
        """Nothing to do: the socket lasts as long as its listener."""

    async def unregister(self, owner: str) -> None:
        """Remove the worker's socket."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path(self.path, owner))

    async def lookup(self, owner: str) -> str | None:
        """``unix:<path>`` when ``owner``'s socket exists. A worker killed without cleanup
        leaves its socket behind: connecting to it is then refused, which the forwarder
        answers as an unknown call."""
        path = socket_path(self.path, owner)
        return f"unix:{path}" if path.exists() else None


class RedisDirectory:
    """Owners in Redis, each entry with a TTL its relay refreshes."""

    def __init__(self, client: redis.Redis, ttl: float, outage: RedisOutage) -> None:
        self._redis = client
        self._ttl_ms = int(ttl * 1000)
        self._outage = outage

    async def register(self, owner: str, address: str) -> None:
        """Set ``relay:owner:<owner>`` to ``address`` for one TTL."""
        await self._redis.set(OWNER_KEY + owner, address, px=self._ttl_ms)

    async def refresh(self, owner: str, address: str) -> None:
        """Set it again (recreating it if Redis lost it, e.g. restarted empty)."""
        await self.register(owner, address)

    async def unregister(self, owner: str) -> None:
        """Delete ``relay:owner:<owner>``."""
        await self._redis.delete(OWNER_KEY + owner)

    async def lookup(self, owner: str) -> str | None:
        """The address registered for ``owner``, or None when there is none (never was, or
        its relay stopped refreshing it a TTL ago)."""
        try:
            value = await self._redis.get(OWNER_KEY + owner)
        except REDIS_ERRORS as exc:
            self._outage.failed("looking up a call's owner", exc)
            raise RoutingUnavailable(
                "The relay that owns this call cannot be found right now (its directory is "
                "unavailable); try again shortly.", retry_after=5) from exc
        self._outage.succeeded()
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
