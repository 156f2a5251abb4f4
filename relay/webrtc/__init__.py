"""WebRTC with aiortc: peer connections, ICE on chosen addresses, and the audio tracks."""
