"""Claiming orphaned runs in the store (``claim_orphans``): what recovering workers share.

Run only against a store that declares ``Store.claims_orphans``.
"""

from __future__ import annotations

import asyncio

import pytest

from ..store import Store
from ._harness import LIVE, ContractHarness, store_test


def _declares(store: Store) -> None:
    if not type(store).claims_orphans:
        pytest.skip(f"{type(store).__name__}.claims_orphans is False")


class OrphanChecks(ContractHarness):
    """``claim_orphans``: expired runs of the given workflows, oldest first, each to one."""

    async def _orphans(self, store: Store, count: int, workflow: str = "wf") -> None:
        for i in range(count):
            run_id = f"{workflow}-{i}"
            await store.claim_run(
                run_id, workflow, {"i": i}, owner="gone", lease_seconds=self.short_lease_seconds
            )
            await asyncio.sleep(0.002)  # distinct creation times, on coarse clocks too

    @store_test("records_runs")
    async def test_claim_orphans_takes_expired_runs_oldest_first(self, store: Store) -> None:
        """Expired runs of the named workflows are claimed, oldest first, up to the limit,
        each counted as a recovery; live, ended and other workflows' runs are left."""
        _declares(store)
        await self._orphans(store, 4)
        await self._orphans(store, 1, workflow="other")
        await store.claim_run("live", "wf", {}, owner="alive", lease_seconds=LIVE)
        await store.finish_run("wf-3", "gone", "failed", error="E: x")
        await asyncio.sleep(self.short_lease_seconds * 2 + 0.05)
        first = await store.claim_orphans(["wf"], owner="me", lease_seconds=LIVE, limit=2)
        assert [r.run_id for r in first] == ["wf-0", "wf-1"]
        rest = await store.claim_orphans(["wf"], owner="me", lease_seconds=LIVE, limit=10)
        assert [r.run_id for r in rest] == ["wf-2"]
        for record in [*first, *rest]:
            assert (record.owner, record.status) == ("me", "running")
            assert (record.recoveries, record.recoveries_without_progress) == (1, 1)
            stored = await store.get_run(record.run_id)
            assert stored is not None
            assert stored.owner == "me"
            assert stored.inputs == record.inputs == {"i": int(record.run_id[-1])}
        assert await store.claim_orphans(["wf"], owner="me", lease_seconds=LIVE) == []
        live = await store.get_run("live")
        other = await store.get_run("other-0")
        assert live is not None
        assert other is not None
        assert (live.owner, other.owner) == ("alive", "gone")

    @store_test("records_runs")
    async def test_claim_orphans_gives_each_run_to_one_worker(self, store: Store) -> None:
        """Workers claiming at the same time get disjoint sets that cover every orphan."""
        _declares(store)
        await self._orphans(store, 12)
        await asyncio.sleep(self.short_lease_seconds * 2 + 0.05)
        workers = [f"worker-{i}" for i in range(4)]
        claims = await asyncio.gather(
            *(
                store.claim_orphans(["wf"], owner=worker, lease_seconds=LIVE, limit=100)
                for worker in workers
            )
        )
        taken = [record.run_id for claim in claims for record in claim]
        assert sorted(taken) == sorted(f"wf-{i}" for i in range(12))  # each once
        for worker, claim in zip(workers, claims, strict=True):
            for record in claim:
                stored = await store.get_run(record.run_id)
                assert stored is not None
                assert stored.owner == worker

    @store_test("records_runs")
    async def test_claim_orphans_counts_no_recovery_of_a_released_run(self, store: Store) -> None:
        """A run released by its owner (no one left it running) is claimed without a
        recovery counted, like claim_run does."""
        _declares(store)
        await store.claim_run("r", "wf", {}, owner="a", lease_seconds=LIVE)
        await store.release_run("r", "a")
        (record,) = await store.claim_orphans(["wf"], owner="me", lease_seconds=LIVE)
        assert (record.owner, record.recoveries) == ("me", 0)
