"""Scanning runs page by page (``scan_runs``): what recovery reads, oldest first."""

from __future__ import annotations

import asyncio

from ..records import RunRecord
from ..store import Store
from ._harness import LIVE, ContractHarness, store_test


async def _scan_all(store: Store, status: str, limit: int) -> list[RunRecord]:
    found: list[RunRecord] = []
    cursor: str | None = None
    for _ in range(1000):
        page, cursor = await store.scan_runs(status, cursor=cursor, limit=limit)  # type: ignore[arg-type]
        assert len(page) <= limit
        found.extend(page)
        if cursor is None:
            return found
    raise AssertionError("scan_runs never returned a last page")


class ScanChecks(ContractHarness):
    """``scan_runs``: every run in a status, oldest first, in pages, none twice."""

    @store_test("records_runs")
    async def test_scan_runs_pages_oldest_first(self, store: Store) -> None:
        """Pages of 2 list every running run once, by creation; other statuses are not
        listed; the last page has no cursor."""
        for i in range(7):
            await store.claim_run(f"run-{i}", "wf", {"i": i}, owner="a", lease_seconds=LIVE)
            await asyncio.sleep(0.002)  # distinct creation times, on coarse clocks too
        await store.finish_run("run-3", "a", "completed", result=3, has_result=True)
        await store.finish_run("run-5", "a", "failed", error="E: x")
        for limit in (1, 2, 5, 100):
            running = await _scan_all(store, "running", limit)
            assert [r.run_id for r in running] == ["run-0", "run-1", "run-2", "run-4", "run-6"]
            assert all(r.status == "running" and r.workflow == "wf" for r in running)
        assert [r.run_id for r in await _scan_all(store, "failed", 2)] == ["run-5"]
        assert await _scan_all(store, "dead", 2) == []

    @store_test("records_runs")
    async def test_scan_runs_goes_on_while_runs_change(self, store: Store) -> None:
        """A run that ends between two pages drops out; the runs after the cursor still
        come, and none comes twice."""
        for i in range(6):
            await store.claim_run(f"run-{i}", "wf", {}, owner="a", lease_seconds=LIVE)
            await asyncio.sleep(0.002)
        first, cursor = await store.scan_runs("running", limit=2)
        assert [r.run_id for r in first] == ["run-0", "run-1"]
        assert cursor is not None
        await store.finish_run("run-0", "a", "completed", result=0, has_result=True)
        await store.finish_run("run-2", "a", "completed", result=2, has_result=True)
        rest: list[RunRecord] = []
        while cursor is not None:
            page, cursor = await store.scan_runs("running", cursor=cursor, limit=2)
            rest.extend(page)
        assert [r.run_id for r in rest] == ["run-3", "run-4", "run-5"]
