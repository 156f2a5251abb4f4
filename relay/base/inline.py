"""Running a coroutine inline, in the callback that wants it run, instead of in a task.

A coroutine that seldom waits (a socket's ``send``, which waits only for a full buffer to
drain) costs a task's creation and a trip through the event loop each time it is
scheduled; on a path taken every 20 ms per call that is a real share of the CPU. Driven
here with ``coro.send(None)``, it runs to its end in the caller, and only when it does
have to wait does a task take it over from that point, as if it had been a task from the
start.

- :func:`resume`: go on, in a task, with a coroutine started inline that now waits.
- :class:`InlineWriter`: write whatever is pending, one write at a time and in order:
  inline when none is in flight, else right after the one in flight, in its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

#: Where an inline write's exception goes (it never reaches the caller).
OnError = Callable[[Exception], None]


@types.coroutine
def resume(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Go on with ``coro``, started elsewhere and now waiting for ``waiting`` (what its
    last ``send`` returned), in the task that awaits this: the task gets ``waiting`` as
    if ``coro`` had yielded it to the task, and what the task sends or throws is relayed
    to ``coro`` until it returns (or raises, which propagates)."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(value)
            except StopIteration:
                return


class InlineWriter:
    """Runs ``write()`` (a coroutine function that writes whatever is pending, then
    returns) each time :meth:`kick` is called: inline, in the caller, when no write is in
    flight; otherwise once more after the one in flight ends, in its task. So one write
    runs at a time, each after the one before: what is written stays in order, and a
    kick is never lost (the write after it sees what it announced).

    A write that has to wait (a socket waiting for its buffer to drain) goes on in a
    task the writer owns; :meth:`close` cancels it. An exception from ``write`` goes to
    ``on_error``, never into the caller, and the writer writes no more (as a writer task
    that died would).
    """

    def __init__(self, write: Callable[[], Coroutine[Any, Any, None]], on_error: OnError,
                 *, name: str | None = None) -> None:
        self._write = write
        self._on_error = on_error
        self._name = name
        #: A write is under way (inline, or in ``_task``).
        self._busy = False
        #: A kick came while it was: write once more after it.
        self._again = False
        #: Closed, or a write failed: no more writes.
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> bool:
        """Whether a write is waiting in the writer's task (it could not finish inline)."""
        return self._task is not None

    def kick(self) -> None:
        """Something is pending: write it now, or after the write in flight."""
        if self._stopped:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        self._again = True
        try:
            while self._again and not self._stopped:
                self._again = False
                coro = self._write()
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    continue
                # It waits: the task takes it over, and the writer stays busy until the
                # task ends.
                self._task = asyncio.get_running_loop().create_task(
                    self._finish(coro, waiting), name=self._name)
                return
        except Exception as exc:
            self._fail(exc)
        finally:
            self._busy = self._task is not None

    async def close(self) -> None:
        """Write no more; cancel a write in flight and wait for it. Safe to call twice."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _finish(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await resume(coro, waiting)
            while self._again and not self._stopped:
                self._again = False
                await self._write()
        except Exception as exc:
            self._fail(exc)
        finally:
            # Nothing awaited since the last write's check: no kick can fall in between.
            if self._task is asyncio.current_task():
                self._task = None
            self._busy = False

    def _fail(self, exc: Exception) -> None:
        self._stopped = True
        self._on_error(exc)
