"""A small UDP forwarder that delays, jitters and reorders, as a mobile link does.

One side is the client (whoever sends first from elsewhere than the target), the other the
target. Each datagram, either way, waits ``delay`` ± ``jitter`` (uniform), except that a
``reorder`` fraction of them goes at once, jumping ahead of those still waiting (netem's
model). Loss is left to nftables. The random source is seeded, so a run can be repeated.
Tests run it as its own process (``python -m tests.support.impair``), so its timing does
not depend on how busy the relay's event loop is.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

Address = tuple[str, int]


class Impairment(asyncio.DatagramProtocol):
    """Forwards between the first peer that writes and :attr:`target` (set it any time)."""

    def __init__(self, *, delay: float, jitter: float, reorder: float, seed: int = 1) -> None:
        self.delay, self.jitter, self.reorder = delay, jitter, reorder
        self.target: Address | None = None
        self.client: Address | None = None
        self._random = random.Random(seed)
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        #: Datagrams forwarded each way, and those that jumped the queue.
        self.up = self.down = self.jumped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.target is None:
            return
        if addr == self.target:
            if self.client is None:
                return
            destination = self.client
            self.down += 1
        else:
            self.client = addr
            destination = self.target
            self.up += 1
        if self._random.random() < self.reorder:
            self.jumped += 1
            self._send(data, destination)
            return
        wait = max(0.0, self.delay + self._random.uniform(-self.jitter, self.jitter))
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def send() -> None:
            self._pending.discard(handle)
            self._send(data, destination)

        handle = loop.call_later(wait, send)
        self._pending.add(handle)

    def _send(self, data: bytes, destination: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, destination)

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()


async def start_impairment(address: Address, **options: Any) -> Impairment:
    """An :class:`Impairment` listening on ``address``."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: Impairment(**options),
                                                      local_addr=address)
    return protocol


async def _serve(listen_ip: str, port: int, delay: float, jitter: float, reorder: float,
                 seed: int) -> None:
    """Forward until standard input ends; its first line is the target ``IP PORT``."""
    proxy = await start_impairment((listen_ip, port), delay=delay, jitter=jitter,
                                   reorder=reorder, seed=seed)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    target = (await reader.readline()).split()
    proxy.target = (target[0].decode(), int(target[1]))
    await reader.read()  # until the test closes our standard input
    proxy.close()
    print(json.dumps({"up": proxy.up, "down": proxy.down, "jumped": proxy.jumped}), flush=True)


if __name__ == "__main__":
    # python -m tests.support.impair LISTEN_IP PORT DELAY JITTER REORDER SEED
    ip, port_text, *numbers = sys.argv[1:7]
    delay_s, jitter_s, reorder_share, seed_value = map(float, numbers)
    asyncio.run(_serve(ip, int(port_text), delay_s, jitter_s, reorder_share, int(seed_value)))
