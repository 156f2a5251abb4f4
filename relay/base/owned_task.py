"""A background task that something owns: started once, cancelled and awaited on close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class OwnedTask:
    """Holds at most one running task; :meth:`close` cancels it and waits for it to end."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as the owned task (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(coro, name=name)

    async def close(self) -> None:
        """Cancel the task and wait for it; safe to call twice, or before :meth:`start`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
