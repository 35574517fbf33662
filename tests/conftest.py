"""Fixtures shared by the whole suite.

A test that needs a server skips, with a reason, when the server is not reachable;
with ``DURABLE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) it fails instead, so that CI
can never go green by skipping what it was meant to test. ``tests/redis`` has its
own ``redis_url`` (env ``DURABLE_REDIS_URL``), which checks the server with a PING.

``postgres_url``  PostgreSQL (env ``DURABLE_POSTGRES_URL``, default
                  ``postgresql://postgres@127.0.0.1:5432/test``).
"""

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("DURABLE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_service(name: str, url: str, default_port: int) -> str:
    """Return ``url`` when its server accepts connections; otherwise skip (or fail)."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        reason = f"{name} is not reachable at {address[0]}:{address[1]} ({exc})"
        if os.environ.get("DURABLE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (DURABLE_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require_service("PostgreSQL", POSTGRES_URL, 5432)
