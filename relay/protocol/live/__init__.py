"""GPT-Live, the second voice protocol: its events, its session configuration, and the
protocol core a call driver runs for a Live session (docs/LIVE_PROTOCOL.md has the wire)."""
