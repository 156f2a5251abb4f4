"""The floor: a call's audio work alone, in a tight loop, with no networking.

Per 20 ms, both ways, a relayed call must at least unprotect the peer's SRTP packet,
decode its Opus to the upstream's 24 kHz mono, encode 20 ms of 24 kHz mono back to Opus
and protect that packet. This module times exactly that, with the relay's own components
(``relay.audio.opus.OpusDecoder``, ``relay.audio.encode.OpusEncoder``) and pylibsrtp (the
library aiortc protects with), on the load's own packets, and reports it as CPU per call
(% of one core, 50 frames a second). Whatever a server spends per call above this is the
cost of moving the packets and events around, not of the audio.

Two steps are timed beside it, not added: resampling (libopus decodes straight to 24 kHz
mono, so the relay never resamples Opus; the figure is what decoding at 48 kHz, aiortc's
path, and resampling after would add), and the same encode through PyAV (what the relay
did before it called libopus directly; where libopus is not found it still does). The
echo's audio going back is the decoded load (the click train, never silent), so the
encoder's silence shortcut never applies here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from relay.audio import RATE
from relay.audio.encode import OpusEncoder
from relay.audio.opus import OpusDecoder, load_libopus

from .audio import FRAME_SAMPLES, LOADS, SAMPLE_RATE, build_click_train

#: Frames of each timed pass, and passes per step (the fastest pass counts: on a shared
#: machine a slower one measured someone else's load).
FRAMES = 500
PASSES = 5
FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SAMPLES
_KEY = bytes(range(30))  # SRTP master key (16) and salt (14)
_SSRC = 0x1234ABCD
_PAYLOAD_TYPE = 111


def _cpu_us_per_frame(step: Callable[[int], object]) -> float:
    """CPU microseconds per call of ``step(index)``: the fastest of :data:`PASSES`."""
    for index in range(20):  # warm caches and lazy imports
        step(index)
    best = float("inf")
    for _ in range(PASSES):
        start = time.process_time()
        for index in range(FRAMES):
            step(index)
        best = min(best, time.process_time() - start)
    return 1e6 * best / FRAMES


def _srtp(direction: int) -> Session:
    return Session(Policy(key=_KEY, ssrc_type=direction,
                          srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))


def _rtp(index: int, payload: bytes) -> bytes:
    packet = RtpPacket(payload_type=_PAYLOAD_TYPE, sequence_number=index & 0xFFFF,
                       timestamp=index * FRAME_SAMPLES & 0xFFFFFFFF, ssrc=_SSRC)
    packet.payload = payload
    return bytes(packet.serialize())


def measure(load: str = "mono") -> dict[str, Any]:
    """Time each step of the floor on ``load``'s packets; µs per 20 ms frame and the
    resulting CPU per call."""
    lib = load_libopus()
    if lib is None:
        raise RuntimeError("libopus not found: the relay's decoder cannot be timed")
    packets = build_click_train(LOADS[load]).packets
    count = len(packets)
    decoder = OpusDecoder(lib, RATE)
    pcm = [decoder.decode(packets[i % count]) for i in range(2 * count)][count:]
    # The SRTP packets the peer sends: the train's payloads, protected once up front; the
    # sequence numbers keep rising, so the receiver's replay check sees a real stream.
    sender = _srtp(Policy.SSRC_ANY_OUTBOUND)
    inbound = [sender.protect(_rtp(i, packets[i % count]))
               for i in range(FRAMES * PASSES + 20)]
    receiver = _srtp(Policy.SSRC_ANY_INBOUND)
    received = iter(inbound)
    outbound = _srtp(Policy.SSRC_ANY_OUTBOUND)
    encoder = OpusEncoder()
    encoded = [encoder.encode(chunk) for chunk in pcm]
    # Sequence numbers rise here too: the sender's SRTP context refuses to reuse an index.
    sent = iter([_rtp(i, encoded[i % count]) for i in range(len(inbound))])
    decoder = OpusDecoder(lib, RATE)
    encoder = OpusEncoder()
    wide = av.CodecContext.create("libopus", "r")
    wide.format, wide.layout, wide.sample_rate = "s16", "stereo", SAMPLE_RATE
    frames_48k = [frame for i in range(count) for frame in wide.decode(av.Packet(packets[i]))]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    def resample(index: int) -> object:
        frame = frames_48k[index % len(frames_48k)]
        frame.pts = None
        return resampler.resample(frame)

    steps = {
        "srtp_unprotect": lambda i: receiver.unprotect(next(received)),
        "opus_decode_24k_mono": lambda i: decoder.decode(packets[i % count]),
        "opus_encode": lambda i: encoder.encode(pcm[i % count]),
        "srtp_protect": lambda i: outbound.protect(next(sent)),
    }
    us = {name: _cpu_us_per_frame(step) for name, step in steps.items()}
    pyav = OpusEncoder(use_libopus=False)
    aside = {
        "resample_48k_stereo_to_24k_mono": _cpu_us_per_frame(resample),
        "opus_encode_through_pyav": _cpu_us_per_frame(lambda i: pyav.encode(pcm[i % count])),
    }
    decoder.close()
    total = sum(us.values())
    return {
        "load": load,
        "us_per_frame": {name: round(value, 1) for name, value in us.items()},
        "aside_us_per_frame": {name: round(value, 1) for name, value in aside.items()},
        "us_per_frame_total": round(total, 1),
        "cpu_pct_per_call": total * FRAMES_PER_SECOND / 1e4,
        "cpu": sorted(os.sched_getaffinity(0)),
    }


def measure_on(core: int | None, load: str) -> dict[str, Any]:
    """:func:`measure`, pinned to ``core`` (the server's) for the time it takes."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        return measure(load)
    finally:
        os.sched_setaffinity(0, before)


def ratios(floor: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    """Each server's CPU per call over the floor, at each N (median run over rounds)."""
    from .report import ok_runs

    lines = []
    for server in results:
        for n, run in sorted(ok_runs(results, server).items()):
            lines.append(f"{server} N={n}: {run['cpu_pct_per_session']:.2f} %/call = "
                         f"{run['cpu_pct_per_session'] / floor['cpu_pct_per_call']:.1f} x floor")
    return lines


def table(floor: dict[str, Any]) -> str:
    """The floor's steps and total, as lines for the report."""
    lines = [f"floor ({floor['load']} load; audio work alone, no networking; "
             f"on cpu {','.join(map(str, floor['cpu']))}):"]
    for name, value in floor["us_per_frame"].items():
        lines.append(f"  {name:<34} {value:>7.1f} us/frame  "
                     f"{value * FRAMES_PER_SECOND / 1e4:.3f} %/call")
    for name, value in floor["aside_us_per_frame"].items():
        lines.append(f"  ({name:<32} {value:>7.1f} us/frame: for comparison, not added)")
    lines.append(f"  {'total':<34} {floor['us_per_frame_total']:>7.1f} us/frame  "
                 f"{floor['cpu_pct_per_call']:.3f} %/call")
    return "\n".join(lines)
