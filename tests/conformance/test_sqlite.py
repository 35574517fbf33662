"""The store conformance suite against SQLite (a persistent store)."""

from __future__ import annotations

import pytest

from durable import Store
from durable.testing import StoreContract

pytest.importorskip("durable_sqlite")

from durable_sqlite import SQLiteStore


class TestSQLiteStore(StoreContract):
    persistent = True

    async def make_store(self) -> Store:
        return SQLiteStore(self.tmp_path / "durable.db")


class TestSQLiteStoreFromUrl(StoreContract):
    """The store ``Workflow(db="sqlite:///...")`` builds."""

    persistent = True

    async def make_store(self) -> Store:
        return SQLiteStore.from_url(f"sqlite:///{self.tmp_path}/durable.db")


class TestSQLiteStoreFullDurability(StoreContract):
    """``durability="full"``: every write goes through the connection off the loop."""

    persistent = True

    async def make_store(self) -> Store:
        return SQLiteStore(self.tmp_path / "durable.db", durability="full")


class TestSQLiteMemoryStore(StoreContract):
    """``sqlite://``: a database in memory, gone when the store closes."""

    async def make_store(self) -> Store:
        return SQLiteStore.from_url("sqlite://")
