"""A call's client on two networks, for the roaming test, run in its own namespace.

It calls on its first network (``ADDRESS1``), says a code word and hears it back, asks for
a second reply and, a moment into hearing it, cuts its first network (its address flushed,
then ``ip link set WIRE down``: a phone leaving Wi-Fi). Nothing more comes from the relay
on that path, so the client resumes the call by itself on ``ADDRESS2`` with a new peer
connection and the call's resume token. It hears the rest of the reply, asks for a reply to
its first turn's item only (``item_reference``: the conversation must be intact), hangs up
and prints what it measured as one JSON line.

    python -m tests.support.roaming_client URL ADDRESS1 ADDRESS2 WIRE
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from relay.client import CallClient, PcmSource

CODE_WORD = "the code word is pineapple"
SECOND = "tell me something long enough to be cut off in the middle of its reply please"
#: How far into the second reply the network goes.
CUT_AFTER = 0.6


def transcripts(client: CallClient, after: int) -> str:
    return " ".join(e.get("transcript", "") for _, e in client.events[after:]
                    if e["type"] == "response.output_audio_transcript.done")


async def main(url: str, first: str, second: str, wire: str) -> None:
    client = CallClient(url, PcmSource(), ice_addresses=(first,), auto_resume=True,
                        resume_addresses=(second,), resume_after=1.0)
    try:
        await client.connect(timeout=30)
        mark = len(client.events)
        client.say(CODE_WORD)
        item = await client.wait_for("conversation.item.added", after=mark)
        await client.wait_for("output_audio_buffer.stopped", after=mark, timeout=30)
        first_reply = transcripts(client, mark)
        mark = len(client.events)
        client.say(SECOND)
        started = await client.wait_for("output_audio_buffer.started", after=mark, timeout=30)
        await asyncio.sleep(CUT_AFTER)
        # The phone leaves Wi-Fi: the link goes, and its address with it.
        await asyncio.to_thread(subprocess.run, ["ip", "addr", "flush", "dev", wire],
                                check=True)
        await asyncio.to_thread(subprocess.run, ["ip", "link", "set", wire, "down"],
                                check=True)
        cut_at = time.monotonic()
        before = [t for t in client.audio_times if t <= cut_at]
        resumed = await client.wait_for("relay.call.resumed", after=mark, timeout=30)
        resumed_at = next(t for t, e in client.events if e is resumed)
        stopped = await client.wait_for(
            "output_audio_buffer.stopped",
            lambda e: e.get("response_id") == started["response_id"], after=mark, timeout=30)
        del stopped
        after = [t for t in client.audio_times if t > cut_at]
        mark = len(client.events)
        client.send({"type": "response.create", "response": {
            "input": [{"type": "item_reference", "id": item["item"]["id"]}]}})
        await client.wait_for("response.done", after=mark, timeout=30)
        await client.wait_for("output_audio_buffer.stopped", after=mark, timeout=30)
        referred = transcripts(client, mark)
        began, opened = client.resumes[0]
        print(json.dumps({
            "call_id": client.call_id,
            "first_reply": first_reply,
            "referred_back": referred,
            "resumed_event": resumed,
            "detect_seconds": round(began - cut_at, 3),
            "resume_seconds": round(opened - began, 3),
            "cut_to_resumed_event": round(resumed_at - cut_at, 3),
            "downlink_gap": round(after[0] - before[-1], 3) if before and after else None,
            "audio_frames_heard": len(client.audio_times),
            "types": client.types(),
        }), flush=True)
        assert await client.hangup() == 200
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
