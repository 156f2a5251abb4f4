"""relay: a self-hosted WebRTC media relay in front of a Realtime speech model."""

__version__ = "0.1.0"
