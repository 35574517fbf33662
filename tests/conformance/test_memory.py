"""The store conformance suite against the in-process store."""

from __future__ import annotations

from durable import InMemoryStore, Store
from durable.plugins import resolve_store
from durable.testing import StoreContract


class TestInMemoryStore(StoreContract):
    async def make_store(self) -> Store:
        return InMemoryStore()


class TestInMemoryStoreFromUrl(StoreContract):
    """The store ``Workflow(db="memory://")`` builds."""

    async def make_store(self) -> Store:
        return resolve_store("memory://")
