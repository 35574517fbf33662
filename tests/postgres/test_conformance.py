"""The store conformance suite on a real PostgreSQL server.

The store users get, two ways in: the URL a user writes (``Workflow(db="postgresql://...?schema=...")``,
resolved through the ``durable.stores`` entry point), and an ``asyncpg`` pool the
application made (``PostgresStore(pool=..., schema=...)``). Each test works in a
schema of its own (the ``schema`` fixture drops it afterwards). Without a server the
classes skip, or fail with ``DURABLE_REQUIRE_SERVICES=1``. And
``PostgresData``, core's rules over the store's eight data primitives (no fast paths):
the suite checks that the native fast paths and the rules they replace agree.
"""

from __future__ import annotations

import asyncpg
import pytest

from durable import Store, Workflow
from durable.plugins import resolve_store
from durable.testing import StoreContract, store_test
from durable_postgres import PostgresStore
from durable_postgres.data import PostgresData

from .conftest import driver_dsn, drop_schema, with_schema


class _OnServer(StoreContract):
    persistent = True
    notifies_signals = True
    url: str
    schema: str

    @pytest.fixture(autouse=True)
    def _postgres_schema(self, pg_url: str, schema: str) -> None:
        self.url, self.schema = pg_url, schema


class TestPostgresStoreFromUrl(_OnServer):
    """``db="postgresql://...?schema=..."``: the store the entry point builds."""

    async def make_store(self) -> Store:
        store = resolve_store(with_schema(self.url, self.schema))
        assert isinstance(store, PostgresStore)
        return store

    @store_test(set_up=False)
    async def test_every_scheme_resolves_to_the_same_data(self, store: Store) -> None:
        """``postgres://`` and ``postgresql+asyncpg://`` name the same store as
        ``postgresql://``: a step written through one is read through the others."""
        await self.set_up_store(store)
        await store.set_step("r", "s", {"from": "postgresql"})
        for scheme in ("postgres", "postgresql+asyncpg"):
            url = with_schema(self.url, self.schema).replace("postgresql", scheme, 1)
            other = resolve_store(url)
            assert isinstance(other, PostgresStore), scheme
            await self.set_up_store(other)
            assert await other.get_step("r", "s") == (True, {"from": "postgresql"}), scheme

    @store_test(set_up=False)
    async def test_a_workflow_built_from_the_url_runs_on_this_schema(self, store: Store) -> None:
        """``Workflow(db=URL)`` sets the store up itself; another store on the same
        schema sees its run, one on another schema does not."""
        wf = Workflow("app", db=with_schema(self.url, self.schema), default_retries=0)
        self._workflows.append(wf)

        @wf.task
        async def double(x: int) -> int:
            return 2 * x

        @wf.workflow
        async def flow(x: int) -> int:
            return await double(x)

        assert await flow.run("url-run", 21) == 42
        await self.set_up_store(store)
        record = await store.get_run("url-run")
        assert record is not None
        assert (record.status, record.result) == ("completed", 42)
        elsewhere = resolve_store(with_schema(self.url, f"{self.schema}_other"))
        try:
            await self.set_up_store(elsewhere)
            assert await elsewhere.get_run("url-run") is None
        finally:
            await self.close_store(elsewhere)
            drop_schema(self.url, f"{self.schema}_other")


class TestPostgresStoreInjectedPool(_OnServer):
    """An ``asyncpg.Pool`` the application made: used as is, never closed by the store.

    The pools are closed by the test after every store of it was closed."""

    _pools: list[asyncpg.Pool]

    async def make_store(self) -> Store:
        pool = await asyncpg.create_pool(driver_dsn(self.url), min_size=1, max_size=5)
        if not hasattr(self, "_pools"):
            self._pools = []
        self._pools.append(pool)
        return PostgresStore(pool=pool, schema=self.schema)

    async def _tear_down(self, *, raise_errors: bool) -> None:
        try:
            await super()._tear_down(raise_errors=raise_errors)
        finally:
            pools, self._pools = getattr(self, "_pools", []), []
            for pool in pools:
                await pool.close()

    @store_test()
    async def test_closing_the_store_leaves_the_users_pool_open(self, store: Store) -> None:
        await store.set_step("r", "s", 1)
        pool = self._pools[-1]
        await self.close_store(store)
        assert not pool.is_closing()
        assert await pool.fetchval("SELECT 41 + 1") == 42
        # A new store on the same pool still finds the data.
        again = await self.set_up_store(PostgresStore(pool=pool, schema=self.schema))
        assert await again.get_step("r", "s") == (True, 1)


class TestPostgresDataPrimitives(_OnServer):
    """``PostgresData``: every rule from :class:`durable.datastore.DataStore`. Its
    ``wait_for_signal`` is the DataStore default (no LISTEN): it polls."""

    notifies_signals = False

    async def make_store(self) -> Store:
        return PostgresData(with_schema(self.url, self.schema))
