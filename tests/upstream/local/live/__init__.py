"""Tests of the embedded server's GPT-Live face (relay.upstream.local.live)."""
