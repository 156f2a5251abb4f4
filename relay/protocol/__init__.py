"""Sans-I/O Realtime protocol: events, session configuration, and each call's state machine."""
