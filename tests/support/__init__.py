"""Helpers the tests share (import them relatively, e.g. ``from ..support.rtp import ...``)."""
