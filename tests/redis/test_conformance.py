"""The store conformance suite on Redis: on fakeredis (always) and on a real server.

The real-server classes skip when the server is unreachable (or fail, with
``DURABLE_REQUIRE_SERVICES=1``). Each test works under a key prefix of its own and
deletes its keys afterwards.
"""

from __future__ import annotations

import fakeredis
import pytest
import redis.asyncio

from durable import Store
from durable.plugins import resolve_store
from durable.testing import StoreContract
from durable_redis import RedisStore


class TestRedisStoreOnFakeredis(StoreContract):
    """An injected fakeredis client; another client on the same FakeServer reopens it."""

    persistent = True
    notifies_signals = True
    _server: fakeredis.FakeServer | None = None

    async def make_store(self) -> Store:
        if self._server is None:
            self._server = fakeredis.FakeServer()
        return RedisStore(client=fakeredis.FakeAsyncRedis(server=self._server))


class _OnServer(StoreContract):
    """A contract run against the real server, under a prefix of its own."""

    persistent = True
    notifies_signals = True
    prefix: str
    url: str

    @pytest.fixture(autouse=True)
    def _redis_prefix(self, redis_url: str, prefix: str) -> None:
        self.url, self.prefix = redis_url, prefix


class TestRedisStoreOnServer(_OnServer):
    """``Workflow(db="redis://...?prefix=...")``: the store the entry point builds."""

    async def make_store(self) -> Store:
        store = resolve_store(f"{self.url}?prefix={self.prefix}")
        assert isinstance(store, RedisStore)
        return store


class TestRedisStoreInjectedClient(_OnServer):
    """A ``redis.asyncio.Redis`` the application made, with ``ttl=None`` (no expiry)."""

    async def make_store(self) -> Store:
        client = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
        return RedisStore(client=client, prefix=self.prefix, ttl=None)
