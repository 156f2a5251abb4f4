"""This relay's place among the others: its owner id, its directory, its limits.

A :class:`Node` is built from the settings, once per app:

- alone (no Redis, no supervisor's directory) it owns every call it makes and knows of no
  other relay: a call id it does not own is unknown (404), as before;
- among the workers of one supervisor (``RELAY_WORKER_DIR``, no Redis) it listens on a
  unix socket there and finds its siblings' sockets;
- with Redis (``RELAY_REDIS_URL``) it registers its internal address under its owner id,
  refreshes it every third of ``RELAY_OWNER_TTL``, and counts the limits there.

Registration starts and stops with the app (aiohttp's cleanup_ctx); if Redis cannot be
reached at start, the refresh loop keeps trying, and meanwhile this relay serves its own
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import redis.asyncio as redis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..base.owned_task import OwnedTask
from ..config import Settings, split_host_port
from ..errors import CallNotFound
from .call_limits import (
    CallLimits,
    FailOpenLimitStore,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
)
from .directory import Directory, RedisDirectory, WorkerDirDirectory, socket_path
from .ids import new_call_id, owner_id, owner_of
from .outage import REDIS_ERRORS, RedisOutage

logger = logging.getLogger(__name__)

#: Seconds a Redis command may take before Redis counts as unreachable: a follow-up
#: request or a call's creation waits at most about this long for it.
REDIS_TIMEOUT = 1.0


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def internal_listener(settings: Settings) -> tuple[str, int] | None:
    """The (host, port) of the internal TCP listener, when there is one: with Redis and
    ``RELAY_INTERNAL_ADDRESS`` (a worker adds its index to the port)."""
    if not settings.redis_url or settings.internal_address is None:
        return None
    host, port = split_host_port(settings.internal_address)
    return host, port + (settings.worker_index or 0)


def advertised_url(settings: Settings) -> str:
    """The URL other relays reach this one at through Redis: the advertised or internal
    address (plus the worker's index), else the public listener."""
    given = settings.advertise_address or settings.internal_address
    if given is None:
        return _http_url(settings.host, settings.port)
    host, port = split_host_port(given)
    return _http_url(host, port + (settings.worker_index or 0))


class Node:
    """This relay's owner id, where it is registered, and where its limits are counted."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner = owner_id(redis=bool(settings.redis_url), worker_index=settings.worker_index)
        self.outage = RedisOutage()
        self._redis: redis.Redis | None = None
        self._heartbeat = OwnedTask()
        #: Where the others find this relay (None: they never look).
        self.address: str | None = None
        self.directory: Directory | None = None
        store: LimitStore = MemoryLimitStore()
        if settings.redis_url:
            self._redis = redis.Redis.from_url(
                settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0))
            self.directory = RedisDirectory(self._redis, settings.owner_ttl, self.outage)
            self.address = advertised_url(settings)
            store = FailOpenLimitStore(RedisLimitStore(self._redis, settings.owner_ttl),
                                       self.outage)
        elif settings.worker_dir is not None and settings.worker_index is not None:
            self.directory = WorkerDirDirectory(settings.worker_dir)
            self.address = f"unix:{socket_path(settings.worker_dir, self.owner)}"
        self.limits = CallLimits(store, per_address=settings.call_rate_per_address,
                                 per_key=settings.call_rate_per_key,
                                 most_per_key=settings.max_calls_per_key)

    @property
    def socket_path(self) -> str | None:
        """The unix socket this worker listens on for its siblings (None: not a worker
        of a supervisor without Redis)."""
        if not isinstance(self.directory, WorkerDirDirectory):
            return None
        return str(socket_path(self.directory.path, self.owner))

    def new_call_id(self) -> str:
        """A new call id naming this relay as its owner."""
        return new_call_id(self.owner)

    async def locate(self, call_id: str, *, forwarded: bool) -> str | None:
        """None when ``call_id`` is this relay's to answer, else the address of the relay
        that owns it. :class:`CallNotFound` when no relay does (or ``forwarded``: a
        forwarded request is never forwarded again), and
        :class:`~relay.errors.RoutingUnavailable` when that cannot be known now."""
        owner = owner_of(call_id)
        if owner == self.owner:
            return None
        if owner is None or self.directory is None:
            raise CallNotFound()
        if forwarded:
            # The owner's address now leads here: it restarted (a new owner id took its
            # address), or two relays advertise one address.
            logger.warning("a request forwarded for owner %s reached owner %s: not forwarded "
                           "again (if %s is alive, two relays share one address)",
                           owner, self.owner, owner)
            raise CallNotFound()
        address = await self.directory.lookup(owner)
        if address is None:
            raise CallNotFound()
        return address

    async def start(self) -> None:
        """Register this relay, and keep its entries (and held calls) fresh until
        :meth:`close`. A Redis that does not answer now is tried again at each refresh."""
        if self.directory is None or self.address is None:
            return
        logger.info("relay owner %s at %s", self.owner, self.address)
        if self._redis is not None:
            await self._refresh(first=True)
            self._heartbeat.start(self._keep_fresh(), name=f"owner:{self.owner}")

    async def close(self) -> None:
        """Stop refreshing, unregister (best effort) and release what is held."""
        await self._heartbeat.close()
        await self.limits.close()
        if self.directory is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.directory.unregister(self.owner)
        if self._redis is not None:
            await self._redis.aclose()

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.owner_ttl / 3)
            await self._refresh(first=False)

    async def _refresh(self, *, first: bool) -> None:
        assert self.directory is not None and self.address is not None
        try:
            if first:
                await self.directory.register(self.owner, self.address)
            else:
                await self.directory.refresh(self.owner, self.address)
            await self.limits.store.refresh()
        except REDIS_ERRORS as exc:
            self.outage.failed("registering this relay", exc)
        else:
            self.outage.succeeded()


async def start_internal_sites(runner: web.AppRunner, node: Node) -> list[web.BaseSite]:
    """Start the listeners other relays forward to (none for a lone relay). They serve the
    same app, so forwarded requests meet the same routes and the same auth."""
    sites: list[web.BaseSite] = []
    listener = internal_listener(node.settings)
    if listener is not None:
        sites.append(web.TCPSite(runner, *listener))
    path = node.socket_path
    if path is not None:
        # A worker killed before it could clean up left its socket: take its place.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sites.append(web.UnixSite(runner, path))
    for site in sites:
        await site.start()
    if path is not None:
        os.chmod(path, 0o600)
    return sites
