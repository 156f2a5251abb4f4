"""``relay call``: speak a WAV and/or type a message into a call through a relay, print
the events, save the reply."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..protocol.events import Event
from ..webrtc.ice_servers import ice_servers_problem
from .call_client import CallClient
from .pcm_source import PcmSource, read_wav, write_wav


def reply_over(event: Event) -> bool:
    """Whether ``event`` ends the reply: its audio has played out, or a response that
    answered in text alone is done. (A response that only calls a tool is not a reply:
    the one after the tool's output is.)"""
    if event["type"] == "output_audio_buffer.stopped":
        return True
    if event["type"] != "response.done":
        return False
    output = (event.get("response") or {}).get("output") or []
    return any(item.get("type") == "message"
               and not any(part.get("type") == "output_audio" for part in item.get("content") or [])
               for item in output)


async def run_call(url: str, input_path: Path | None, output_path: Path | None, *,
                   say: str | None = None, api_key: str | None,
                   ice_addresses: Sequence[str], ice_servers: Sequence[str] = (),
                   timeout: float) -> int:
    """Speak ``input_path`` and/or type ``say`` into a call, wait for the whole reply,
    write its audio to ``output_path`` (if given); return the exit status."""
    pcm = read_wav(input_path) if input_path is not None else b""
    finished = asyncio.Event()

    def show(event: Event) -> None:
        print(json.dumps(event), flush=True)
        if reply_over(event):
            finished.set()

    problem = ice_servers_problem(ice_servers)
    if problem:
        print(f"relay call: --ice-server {problem}", file=sys.stderr)
        return 2
    client = CallClient(url, PcmSource(pcm), api_key=api_key, ice_addresses=ice_addresses,
                        ice_servers=ice_servers, on_event=show)
    try:
        await client.connect()
        if say is not None:
            client.say(say)
        await asyncio.wait_for(finished.wait(), timeout)
        await asyncio.sleep(0.3)  # the last frames are still in the jitter buffer
        await client.hangup()
    except (TimeoutError, RuntimeError) as exc:
        print(f"relay call: {str(exc) or 'timed out waiting for the reply'}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if output_path is not None:
        write_wav(output_path, bytes(client.received))
        print(f"wrote {len(client.received) / 48000:.2f} s of audio to {output_path}",
              file=sys.stderr)
    return 0
