"""Audio: resampling to the upstream's 24 kHz PCM16, uplink chunking, and the playout buffer."""

#: The upstream's audio: 24 kHz mono signed 16-bit little-endian.
RATE = 24000
SAMPLE_BYTES = 2
#: One WebRTC audio frame: 20 ms.
FRAME_MS = 20
FRAME_SECONDS = FRAME_MS / 1000
#: Opus always runs at 48 kHz on the wire: its RTP clock rate and aiortc's decoded frames.
OPUS_RATE = 48000
FRAME_SAMPLES = RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES

#: The Opus the relay sends to peers, by default: CELT-only ('lowdelay') at 48 kbit/s,
#: full complexity. relay/audio/encode.py has the measurements behind these.
OPUS_APPLICATIONS = ("voip", "audio", "lowdelay")
DEFAULT_OPUS_APPLICATION = "lowdelay"
DEFAULT_OPUS_BITRATE = 48000
DEFAULT_OPUS_COMPLEXITY = 10
