"""Shared fixtures of the crash tests.

``redis_db``  a ``db=`` URL on the Redis server (``DURABLE_REDIS_URL``, default
              ``redis://127.0.0.1:6379/9``) under a key prefix of its own, deleted
              afterwards; skipped without a server unless ``DURABLE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REQUIRED = os.environ.get("DURABLE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("DURABLE_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A ``db=`` URL on the Redis server under a prefix of its own, deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        reason = f"no Redis server at {REDIS_URL}: {exc}"
        if REQUIRED:
            pytest.fail(f"{reason} (DURABLE_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    prefix = f"durable-test-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
