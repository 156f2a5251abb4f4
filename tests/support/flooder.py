"""A hostile neighbour for the neighbour test, run as its own process at a lower priority
(a stranger's client runs on the stranger's machine: its CPU is not the relay's, and on a
machine of two cores it should not take the relay's core).

It calls the relay and floods the call's data channel as fast as the channel takes it
(it waits only while the channel's send buffer is full): oversize messages, invalid JSON,
JSON nested 10 000 deep, lone surrogates, fields of the wrong type, binary garbage,
unknown event types and valid events. When the relay ends the call for
the flood it calls again, until ``SECONDS`` have passed or ``MAX_MESSAGES`` were sent.
It prints ``flooding`` when the first flood starts, and at the end one JSON line: the
calls it made, messages sent by kind, and the ``error`` events it got, by code.

    python -m tests.support.flooder URL SECONDS MAX_MESSAGES OVERSIZE_BYTES
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from relay.client import CallClient, PcmSource

LOOPBACK = ("127.0.0.1",)
#: Bytes queued on the channel beyond which the flooder waits for it to drain.
HIGH_WATER = 256 * 1024


def messages(oversize: int) -> itertools.cycle[tuple[str, str | bytes]]:
    """What the flood sends, round and round: mostly small garbage and valid events, and
    now and then a message over the relay's size limit."""
    small: list[tuple[str, str | bytes]] = [
        ("valid", json.dumps({"type": "input_audio_buffer.clear"})),
        ("invalid_json", '{"type": "session.update", "session": {'),
        ("binary", os.urandom(64)),
        ("unknown_type", json.dumps({"type": "no.such.event", "x": 1})),
        ("valid", json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "Flood."}})),
        ("not_an_event", json.dumps([1, 2, 3])),
        ("valid", json.dumps({"type": "response.cancel"})),
        ("unknown_type", json.dumps({"type": ""})),
        # Issue 25's: nesting past Python's own parser, a lone surrogate the upstream's
        # WebSocket cannot encode, a number where the embedded server reads an object.
        ("deep_json", "[" * 5000 + "]" * 5000),
        ("surrogate", '{"type":"session.update","session":{"instructions":"\\ud800"}}'),
        ("wrong_type", json.dumps({"type": "response.create", "response": {"audio": 5}})),
    ]
    return itertools.cycle([*small * 3, ("oversize", "x" * oversize)])


async def flood_call(client: CallClient, deadline: float, budget: int,
                     sent: Counter[str], oversize: int) -> None:
    """Send on ``client``'s channel until the deadline, the budget, or the call's end."""
    channel = client.channel
    for kind, message in messages(oversize):
        if time.monotonic() >= deadline or sum(sent.values()) >= budget:
            return
        while channel.readyState == "open" and channel.bufferedAmount > HIGH_WATER:
            await asyncio.sleep(0.002)
            if time.monotonic() >= deadline:
                return
        if channel.readyState != "open":
            return
        channel.send(message)
        sent[kind] += 1
        await asyncio.sleep(0)  # let aiortc's sender run


async def main(url: str, seconds: float, budget: int, oversize: int) -> dict[str, Any]:
    """Flood call after call for ``seconds``; what was sent and answered."""
    sent: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    calls: list[dict[str, Any]] = []
    deadline = 0.0
    while not calls or (time.monotonic() < deadline and sum(sent.values()) < budget):
        client = CallClient(url, PcmSource(), ice_addresses=LOOPBACK)
        try:
            await client.connect()
            await client.wait_for("session.created")
            if not calls:
                deadline = time.monotonic() + seconds
                print("flooding", flush=True)
            began, before = time.monotonic(), sum(sent.values())
            await flood_call(client, deadline, budget, sent, oversize)
            ended = client.channel.readyState != "open"
            flooded = (sum(sent.values()) - before, round(time.monotonic() - began, 2))
            await asyncio.sleep(0.2)  # the last answers
            codes = Counter(event["error"]["code"] for _, event in client.events
                            if event["type"] == "error")
            errors.update(codes)
            calls.append({"id": client.call_id, "ended_by_relay": ended,
                          "sent": flooded[0], "seconds": flooded[1],
                          "errors": sum(codes.values())})
        finally:
            await client.close()
    return {"calls": calls, "sent": dict(sent), "errors": dict(errors)}


if __name__ == "__main__":
    os.nice(10)
    url, seconds, budget, oversize = sys.argv[1:5]
    result = asyncio.run(main(url, float(seconds), int(budget), int(oversize)))
    print(json.dumps(result), flush=True)
