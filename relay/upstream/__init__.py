"""The model side: the Realtime WebSocket client, and the embedded local Realtime server."""
