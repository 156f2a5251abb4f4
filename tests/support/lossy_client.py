"""A call's client for the lossy-link test, run in its own network namespace.

It calls through a proxy (every candidate of the relay's answer is replaced by the proxy's
address), with the in-band FEC a browser sends (aiortc's Opus encoder set up as
Chromium's: voice mode, about 32 kbit/s, FEC on); once connected it speaks a WAV file,
stays on the call for ``SECONDS``, hangs up and prints what it sent as one JSON line.

    python -m tests.support.lossy_client URL WAV ICE_ADDRESS PROXY_IP PROXY_PORT SECONDS
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from aiortc.codecs import opus

from relay.client import CallClient, PcmSource, read_wav


def browser_like_opus() -> None:
    """aiortc's Opus encoder, as a browser's: voice mode with in-band FEC."""
    original = opus.OpusEncoder.__init__

    def init(self: opus.OpusEncoder) -> None:
        original(self)
        self.codec.bit_rate = 32000
        self.codec.options = {"application": "voip", "fec": "1", "packet_loss": "10"}

    opus.OpusEncoder.__init__ = init  # type: ignore[method-assign]


def through_proxy(ip: str, port: int):  # type: ignore[no-untyped-def]
    def edit(sdp: str) -> str:
        return re.sub(r"^(a=candidate:\S+ \d+ udp \d+ )\S+ \d+ (typ host).*$",
                      rf"\g<1>{ip} {port} \g<2>", sdp, flags=re.M)
    return edit


async def main(url: str, wav: str, address: str, proxy_ip: str, proxy_port: int,
               seconds: float) -> None:
    browser_like_opus()
    source = PcmSource()
    client = CallClient(url, source, ice_addresses=(address,),
                        edit_answer=through_proxy(proxy_ip, proxy_port))
    try:
        await client.connect(timeout=30)
        source.play(read_wav(Path(wav)))
        await asyncio.sleep(seconds)
        status = await client.hangup()
        stats = await client.pc.getStats()
        sent = [s.packetsSent for s in stats.values() if s.type == "outbound-rtp"]
        print(json.dumps({"hangup": status, "packets_sent": sent,
                          "heard_seconds": len(client.received) / 48000}), flush=True)
    finally:
        await client.close()


if __name__ == "__main__":
    url, wav, address, proxy_ip, proxy_port, seconds = sys.argv[1:7]
    asyncio.run(main(url, wav, address, proxy_ip, int(proxy_port), float(seconds)))
