"""Data shared between store objects, and set-up and close."""

from __future__ import annotations

import asyncio

from ..store import Store
from ._harness import LIVE, NESTED, ContractHarness, store_test


class PersistenceChecks(ContractHarness):
    """Data shared between store objects, and set-up and close."""

    # -- persistence ------------------------------------------------------------------

    async def _write_sample(self, store: Store) -> None:
        await store.set_step("run-1", "fetch", NESTED)
        await store.set_step("run-1", "falsy", None)
        await store.set_signal("run-1", "approval", 0)
        if self.records_runs:
            await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
            await store.finish_run("run-1", "a", "completed", result=[1, "x"], has_result=True)
            await store.claim_run("run-2", "wf", {"n": 2}, owner="b", lease_seconds=LIVE)

    async def _check_sample(self, store: Store) -> None:
        assert await store.get_step("run-1", "fetch") == (True, NESTED)
        assert await store.get_step("run-1", "falsy") == (True, None)
        assert await store.get_signal("run-1", "approval") == (True, 0)
        assert await store.set_signal("run-1", "approval", 1) is False
        loaded = await store.load_steps("run-1")
        if loaded is not None or self.loads_steps:
            assert loaded is not None
            assert dict(loaded) == {"fetch": NESTED, "falsy": None}
        if self.records_runs:
            done = await self._run_record(store, "run-1")
            assert (done.status, done.result, done.has_result) == ("completed", [1, "x"], True)
            assert done.inputs == {"n": 1}
            running = await self._run_record(store, "run-2")
            assert (running.status, running.owner) == ("running", "b")
            claim = await store.claim_run("run-2", "wf", None, owner="c", lease_seconds=LIVE)
            assert claim.acquired is False

    @store_test("persistent")
    async def test_persistent_second_store_sees_writes(self, store: Store) -> None:
        """Writes are visible to another store object on the same data once they return."""
        await self._write_sample(store)
        await self._check_sample(await self.open_store_again())

    @store_test("persistent")
    async def test_persistent_data_survives_close_and_reopen(self, store: Store) -> None:
        """Steps, signals and run records survive closing the store and opening it again."""
        await self._write_sample(store)
        await self.close_store(store)
        await self._check_sample(await self.open_store_again())

    @store_test("persistent")
    async def test_concurrent_set_signal_across_stores(self, store: Store) -> None:
        """Store objects on one database racing to deliver a signal: exactly one True."""
        stores = [store, *[await self.open_store_again() for _ in range(3)]]
        n = self.concurrency
        results = await asyncio.gather(
            *(stores[i % len(stores)].set_signal("run-1", "go", i) for i in range(n))
        )
        winners = [i for i, delivered in enumerate(results) if delivered]
        assert len(winners) == 1, f"set_signal returned True {len(winners)} times"
        for s in stores:
            assert await s.get_signal("run-1", "go") == (True, winners[0])

    @store_test("persistent", "records_runs")
    async def test_concurrent_claim_across_stores(self, store: Store) -> None:
        """Store objects on one database racing to claim a new run: exactly one acquires."""
        stores = [store, *[await self.open_store_again() for _ in range(3)]]
        owners = [f"owner-{i}" for i in range(self.concurrency)]
        claims = await asyncio.gather(
            *(
                stores[i % len(stores)].claim_run("run-1", "wf", None, owner=o, lease_seconds=LIVE)
                for i, o in enumerate(owners)
            )
        )
        self._assert_one_winner(claims, owners)

    @store_test()
    async def test_concurrent_set_step_all_recorded(self, store: Store) -> None:
        """Many steps of many runs recorded at once are all there when the calls return."""
        n = self.concurrency * 5
        await asyncio.gather(
            *(store.set_step(f"run-{i % 7}", f"step-{i}", {"i": i}, attempt=1) for i in range(n))
        )
        readers = [store, await self.open_store_again()] if self.persistent else [store]
        for reader in readers:
            for i in range(n):
                assert await reader.get_step(f"run-{i % 7}", f"step-{i}") == (True, {"i": i})
            loaded = await reader.load_steps("run-3")
            if loaded is not None:
                assert dict(loaded) == {f"step-{i}": {"i": i} for i in range(n) if i % 7 == 3}

    # -- lifecycle --------------------------------------------------------------------

    @store_test()
    async def test_setup_again_while_open_is_harmless(self, store: Store) -> None:
        """``setup()`` on a store already set up changes nothing (two workflows may share it).

        Every :class:`~durable.Workflow` sets its store up when first used, so a store
        given to two workflows is set up twice; ``close()`` may then come twice too.
        """
        await store.set_step("run-1", "s", 1)
        await store.setup()
        assert await store.get_step("run-1", "s") == (True, 1)
        await store.set_step("run-1", "t", 2)
        assert await store.get_step("run-1", "t") == (True, 2)
        await store.close()
        await store.close()
        await store.setup()
        await store.set_step("run-1", "u", 3)
        assert await store.get_step("run-1", "u") == (True, 3)

    @store_test(set_up=False)
    async def test_concurrent_setup_is_harmless(self, store: Store) -> None:
        """Two ``setup()`` calls at once on one store leave one working store.

        Two workflows sharing a store set it up at the same time when both start at once.
        """
        self._track(store)

        async def set_up_and_write() -> None:
            await store.setup()
            await store.set_step("run-1", "s", 1)
            assert await store.set_signal("run-1", "go", 1) is True

        await asyncio.gather(set_up_and_write(), store.setup(), store.setup())
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_signal("run-1", "go") == (True, 1)
        await store.set_step("run-1", "t", 2)
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_step("run-1", "t") == (True, 2)

    @store_test("persistent", set_up=False)
    async def test_stores_set_up_at_once_on_new_data(self, store: Store) -> None:
        """Several store objects set up at once on new data (processes starting together)."""
        stores = [self._track(store), *[self._track(await self.reopen_store()) for _ in range(3)]]
        await asyncio.gather(*(s.setup() for s in stores))
        for i, s in enumerate(stores):
            await s.set_step("run-1", f"s{i}", i)
        for s in stores:
            for i in range(len(stores)):
                assert await s.get_step("run-1", f"s{i}") == (True, i)

    @store_test()
    async def test_close_then_setup_again(self, store: Store) -> None:
        """After ``close()`` the store can be set up again and used."""
        await store.set_step("run-1", "before", 1)
        await store.close()
        await store.setup()
        await store.set_step("run-1", "after", 2)
        assert await store.get_step("run-1", "after") == (True, 2)
        assert await store.set_signal("run-1", "go", True) is True
        assert await store.get_signal("run-1", "go") == (True, True)
        if self.persistent:
            assert await store.get_step("run-1", "before") == (True, 1)
