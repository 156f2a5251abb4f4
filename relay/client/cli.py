"""``relay call``: stream a WAV through a relay, print the events, save the reply."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..protocol.events import Event
from ..webrtc.ice_servers import ice_servers_problem
from .call_client import CallClient
from .media import PcmSource, read_wav, write_wav


async def run_call(url: str, input_path: Path, output_path: Path, *, api_key: str | None,
                   ice_addresses: Sequence[str], ice_servers: Sequence[str] = (),
                   timeout: float) -> int:
    """Speak ``input_path`` into a call, wait for the whole reply, write it; exit status."""
    pcm = read_wav(input_path)

    def show(event: Event) -> None:
        print(json.dumps(event), flush=True)

    problem = ice_servers_problem(ice_servers)
    if problem:
        print(f"relay call: --ice-server {problem}", file=sys.stderr)
        return 2
    client = CallClient(url, PcmSource(pcm), api_key=api_key, ice_addresses=ice_addresses,
                        ice_servers=ice_servers, on_event=show)
    try:
        await client.connect()
        # The reply has played out when its buffer stops (or is cleared).
        await client.wait_for("output_audio_buffer.stopped", timeout=timeout)
        await asyncio.sleep(0.3)  # the last frames are still in the jitter buffer
        await client.hangup()
    except (TimeoutError, RuntimeError) as exc:
        print(f"relay call: {str(exc) or 'timed out waiting for the reply'}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    write_wav(output_path, bytes(client.received))
    print(f"wrote {len(client.received) / 48000:.2f} s of audio to {output_path}",
          file=sys.stderr)
    return 0
