"""Tests of the model side (relay.upstream)."""
