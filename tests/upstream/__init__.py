"""Tests of the embedded local Realtime server."""
