"""Returning freed heap memory after calls, and its setting."""

import pytest

from relay.config import Settings
from relay.errors import ConfigError
from relay.server.memory import heap_trimmer


def test_memory_trimmer_runs_on_glibc() -> None:
    trim = heap_trimmer()
    assert trim is not None  # the relay's platform (Debian, glibc)
    blocks = [bytearray(4096) for _ in range(10000)]
    del blocks[::2]
    trim()


def test_memory_trim_setting_from_env() -> None:
    assert Settings.from_env({}).trim_memory is True
    assert Settings.from_env({"RELAY_TRIM_MEMORY": "off"}).trim_memory is False
    with pytest.raises(ConfigError, match="RELAY_TRIM_MEMORY must be on or off"):
        Settings.from_env({"RELAY_TRIM_MEMORY": "maybe"})
