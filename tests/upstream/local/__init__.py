"""Tests of the embedded local Realtime server (relay.upstream.local)."""
