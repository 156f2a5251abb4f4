"""Webhooks: telling the operator's backend when calls start and end, signed and retried.

Each event is POSTed as JSON to ``RELAY_WEBHOOK_URL``, shaped as OpenAI's webhook events::

    {"object": "event", "id": "evt_...", "type": "call.ended", "created_at": 1733300000,
     "data": {"call_id": "rtc_...", ...}}

and signed as OpenAI signs its own, by the Standard Webhooks scheme: headers
``webhook-id`` (the event's id, the same on every attempt), ``webhook-timestamp`` (Unix
seconds of the attempt) and ``webhook-signature`` (``v1,`` and base64 of HMAC-SHA256, keyed
with the base64 key of the ``whsec_`` secret, over ``id.timestamp.body``), so the
``standardwebhooks`` package or openai's ``client.webhooks.verify_signature`` verify it.

Delivery never blocks a call: :meth:`WebhookSender.send` only queues. One task delivers
the queue in order; an attempt that fails (no answer, a timeout, any status but 2xx) is
tried again after a backoff that doubles from :data:`FIRST_BACKOFF` up to
:data:`MAX_BACKOFF`, until ``retry_for`` seconds after its first attempt, when it is given
up (and logged). Receivers should deduplicate on ``webhook-id``: an answer lost on the way
back makes the event come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..base.webhook_signature import secret_key, sign
from ..protocol.events import random_id

logger = logging.getLogger(__name__)

#: Seconds before the first retry; each retry waits twice as long, up to MAX_BACKOFF.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 60.0
#: Seconds one attempt may take.
ATTEMPT_TIMEOUT = 10.0
#: Events waiting at most (the oldest are dropped beyond: a receiver down for long).
MAX_QUEUED = 10_000


@dataclass
class _Delivery:
    id: str
    type: str
    body: bytes
    first_attempt: float | None = None
    attempts: int = 0
    backoff: float = FIRST_BACKOFF
    #: Loop time before which it is not tried again.
    not_before: float = 0.0


class WebhookSender:
    """Signs, queues and delivers webhook events to one URL, in order, retrying."""

    def __init__(self, url: str, secret: str, *, retry_for: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._key = secret_key(secret)
        self.retry_for = retry_for
        self._clock = clock
        self._queue: deque[_Delivery] = deque()
        self._wake = asyncio.Event()
        #: Set while nothing is queued.
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Counters: delivered, attempts that failed, events given up or dropped.
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0

    def send(self, kind: str, data: dict[str, Any]) -> str:
        """Queue the event ``kind`` with ``data``; returns its id. Never blocks."""
        event_id = random_id("evt_", 24)
        body = json.dumps({"object": "event", "id": event_id, "type": kind,
                           "created_at": int(self._clock()), "data": data},
                          separators=(",", ":")).encode()
        if len(self._queue) >= MAX_QUEUED:
            dropped = self._queue.popleft()
            self.given_up += 1
            logger.warning("webhooks: %d events queued; dropped %s %s", MAX_QUEUED,
                           dropped.type, dropped.id)
        self._queue.append(_Delivery(event_id, kind, body))
        self._idle.clear()
        self._wake.set()
        return event_id

    @property
    def pending(self) -> int:
        """Events not yet delivered (nor given up)."""
        return len(self._queue)

    def start(self) -> None:
        """Start delivering; until :meth:`close`."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=ATTEMPT_TIMEOUT))
        self._task = asyncio.get_running_loop().create_task(self._deliver(), name="webhooks")

    async def close(self, grace: float = 5.0) -> None:
        """Deliver what is queued for up to ``grace`` seconds, then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._queue:
            logger.warning("webhooks: %d events not delivered at shutdown", len(self._queue))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            delivery = self._queue[0]
            wait = delivery.not_before - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if await self._attempt(delivery):
                self.delivered += 1
                self._queue.popleft()
                continue
            self.failed_attempts += 1
            assert delivery.first_attempt is not None
            if self._clock() - delivery.first_attempt >= self.retry_for:
                self.given_up += 1
                self._queue.popleft()
                logger.error("webhooks: gave up on %s %s after %d attempts", delivery.type,
                             delivery.id, delivery.attempts)
                continue
            delivery.not_before = loop.time() + delivery.backoff
            delivery.backoff = min(MAX_BACKOFF, delivery.backoff * 2)

    async def _attempt(self, delivery: _Delivery) -> bool:
        assert self._session is not None
        now = self._clock()
        if delivery.first_attempt is None:
            delivery.first_attempt = now
        delivery.attempts += 1
        timestamp = int(now)
        headers = {"Content-Type": "application/json", "webhook-id": delivery.id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(self._key, delivery.id, timestamp, delivery.body),
                   "User-Agent": "relay-webhooks"}
        try:
            async with self._session.post(self.url, data=delivery.body, headers=headers,
                                          allow_redirects=False) as answer:
                await answer.read()
                ok = 200 <= answer.status < 300
                problem = f"status {answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, problem = False, type(exc).__name__
        if not ok and delivery.attempts == 1:
            logger.warning("webhooks: %s %s not delivered (%s); retrying", delivery.type,
                           delivery.id, problem)
        return ok
