"""A real Redis for the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.redis import RedisServer, redis_server


@pytest.fixture
def redis_db(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` of this test's own."""
    yield from redis_server(tmp_path)
