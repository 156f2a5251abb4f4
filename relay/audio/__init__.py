"""Audio: resampling to the upstream's 24 kHz PCM16, uplink chunking, and the playout buffer."""

#: The upstream's audio: 24 kHz mono signed 16-bit little-endian.
RATE = 24000
SAMPLE_BYTES = 2
#: One WebRTC audio frame: 20 ms.
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
