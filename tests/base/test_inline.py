"""Running writes inline: :class:`InlineWriter`."""

from __future__ import annotations

import asyncio

import pytest

from relay.base.inline import InlineWriter


class Sink:
    """A writer's pending items and where they go; ``gate`` (when set) makes each write
    wait until it is opened, as a socket whose buffer must drain."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.written: list[int] = []
        self.writes = 0
        self.gate: asyncio.Event | None = None

    async def write(self) -> None:
        self.writes += 1
        items, self.pending = self.pending, []
        for item in items:
            if self.gate is not None:
                await self.gate.wait()
            self.written.append(item)


async def test_inline_writer_writes_in_the_caller_when_nothing_waits() -> None:
    sink = Sink()
    writer = InlineWriter(sink.write, pytest.fail)
    for item in range(3):
        sink.pending.append(item)
        writer.kick()
        assert sink.written == list(range(item + 1))  # already, no loop turn between
    assert not writer.waiting
    await writer.close()


async def test_inline_writer_keeps_order_when_a_write_must_wait() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    writer = InlineWriter(sink.write, pytest.fail)
    sink.pending += [0, 1]
    writer.kick()
    assert writer.waiting and sink.written == []
    for item in (2, 3):  # queued while the write waits: after it, not beside it
        sink.pending.append(item)
        writer.kick()
    assert sink.writes == 1
    sink.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sink.written == [0, 1, 2, 3] and not writer.waiting
    # Both kicks announced what the second write took: one write more, not two.
    assert sink.writes == 2
    sink.gate = None
    sink.pending.append(4)
    writer.kick()
    assert sink.written == [0, 1, 2, 3, 4]
    await writer.close()


async def test_inline_writer_a_kick_during_a_write_writes_once_more_after_it() -> None:
    sink = Sink()

    async def write_and_kick() -> None:
        await sink.write()
        if sink.writes == 1:
            sink.pending.append(1)
            writer.kick()  # from inside the write (a callback it set off)
            assert sink.written == [0]  # not nested: after this write

    writer = InlineWriter(write_and_kick, pytest.fail)
    sink.pending.append(0)
    writer.kick()
    assert sink.written == [0, 1] and sink.writes == 2


async def test_inline_writer_reports_an_error_and_writes_no_more() -> None:
    errors: list[Exception] = []
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise RuntimeError("bug")

    writer = InlineWriter(broken, errors.append)
    writer.kick()  # not raised here
    writer.kick()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError) and calls == [1]


async def test_inline_writer_reports_an_error_of_a_write_that_waited() -> None:
    errors: list[Exception] = []

    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("bug")

    writer = InlineWriter(broken, errors.append)
    writer.kick()
    assert writer.waiting
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(errors) == 1 and not writer.waiting
    await writer.close()


async def test_inline_writer_close_cancels_a_waiting_write_and_stops() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    writer = InlineWriter(sink.write, pytest.fail)
    sink.pending.append(0)
    writer.kick()
    assert writer.waiting
    await writer.close()
    assert not writer.waiting
    sink.gate.set()
    sink.pending.append(1)
    writer.kick()
    await asyncio.sleep(0)
    assert sink.written == []
    await writer.close()  # twice is fine
