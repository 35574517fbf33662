"""Run outcomes (``finish_run``, the seed's ``mark_run_*``), ``get_run``, ``list_runs``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..errors import UnsupportedOperation
from ..store import FinalStatus, RunRecord, Store
from ._harness import LIVE, NESTED, ContractHarness, store_test


class RunRecordChecks(ContractHarness):
    """Run outcomes (``finish_run``, the seed's ``mark_run_*``), ``get_run``, ``list_runs``."""

    # -- run records: outcomes --------------------------------------------------------

    @store_test("records_runs")
    async def test_finish_run_completed_stores_result(self, store: Store) -> None:
        """``finish_run(completed)`` stores the result, clears the lease, moves updated_at."""
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        await asyncio.sleep(0.05)
        await store.finish_run("run-1", "a", "completed", result=NESTED, has_result=True)
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.result == NESTED
        assert record.has_result is True
        assert record.error is None
        assert record.owner is None
        assert record.lease_expires_at is None
        assert record.workflow == "wf"
        assert record.inputs == {"n": 1}
        assert record.created_at == claim.record.created_at
        assert record.updated_at is not None
        assert claim.record.updated_at is not None
        assert record.updated_at > claim.record.updated_at

    @store_test("records_runs")
    async def test_finish_run_failed_stores_error(self, store: Store) -> None:
        """``finish_run(failed)`` stores the error, no result, and clears the lease."""
        claim = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await asyncio.sleep(0.05)
        await store.finish_run("run-1", "a", "failed", error="ValueError: bad ✓")
        record = await self._run_record(store, "run-1")
        assert record.status == "failed"
        assert record.error == "ValueError: bad ✓"
        assert record.has_result is False
        assert record.owner is None
        assert record.lease_expires_at is None
        assert record.updated_at is not None
        assert claim.record.updated_at is not None
        assert record.updated_at > claim.record.updated_at

    @store_test("records_runs")
    async def test_finish_run_without_result_keeps_has_result_false(self, store: Store) -> None:
        """A completion without a storable result is recorded with ``has_result`` False."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-1", "a", "completed", result=None, has_result=False)
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.has_result is False
        assert record.result is None

    @store_test("records_runs")
    async def test_finish_run_by_former_owner_is_ignored(self, store: Store) -> None:
        """An owner whose run was taken over cannot record its outcome; the new owner can.

        The engine relies on this: a process that lost its lease stops, and the run's
        outcome is the new owner's to record.
        """
        lease = self.short_lease_seconds
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        await asyncio.sleep(lease * 2 + 0.05)
        assert (await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)).acquired
        await store.finish_run("run-1", "a", "completed", result="from a", has_result=True)
        await store.finish_run("run-1", "a", "failed", error="E: from a")
        record = await self._run_record(store, "run-1")
        assert record.status == "running"
        assert record.owner == "b"
        assert record.has_result is False
        assert await store.renew_lease("run-1", "b", LIVE) is True
        await store.finish_run("run-1", "b", "completed", result="from b", has_result=True)
        record = await self._run_record(store, "run-1")
        assert (record.status, record.result, record.owner) == ("completed", "from b", None)

    @store_test("records_runs")
    async def test_get_run_unknown_is_none(self, store: Store) -> None:
        """``get_run`` of a run never claimed is None, even when the run has steps."""
        assert await store.get_run("no-such-run") is None
        await store.set_step("steps-only", "s", 1)
        await store.set_signal("steps-only", "go", 1)
        assert await store.get_run("steps-only") is None

    @store_test("records_runs")
    async def test_run_record_values_are_copies(self, store: Store) -> None:
        """A record's ``inputs`` and ``result`` are the store's data, not live objects: a
        caller changing them (or the values it passed in) changes nothing stored."""
        inputs: dict[str, Any] = {"items": [1, 2]}
        claim = await store.claim_run("run-1", "wf", inputs, owner="a", lease_seconds=LIVE)
        inputs["items"].append("caller")
        claim.record.inputs["items"].append("claim")
        result: dict[str, Any] = {"total": [3]}
        await store.finish_run("run-1", "a", "completed", result=result, has_result=True)
        result["total"].append("caller")
        for _ in range(2):
            record = await self._run_record(store, "run-1")
            assert (record.inputs, record.result) == ({"items": [1, 2]}, {"total": [3]})
            record.inputs["items"].append("get_run")
            record.result["total"].append("get_run")
        listed = (await store.list_runs())[0]
        listed.result["total"].append("list_runs")
        refused = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert refused.record.result == {"total": [3]}
        refused.record.result["total"].append("claim")
        record = await self._run_record(store, "run-1")
        assert (record.inputs, record.result) == ({"items": [1, 2]}, {"total": [3]})

    @store_test("records_runs")
    async def test_mark_run_done_sets_completed(self, store: Store) -> None:
        """The seed's ``mark_run_done`` shows as completed without a result."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.mark_run_done("run-1")
        record = await self._run_record(store, "run-1")
        assert record.status == "completed"
        assert record.has_result is False
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True

    @store_test("records_runs")
    async def test_mark_run_failed_sets_failed(self, store: Store) -> None:
        """The seed's ``mark_run_failed`` shows as failed with the error."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.mark_run_failed("run-1", "RuntimeError: boom")
        record = await self._run_record(store, "run-1")
        assert record.status == "failed"
        assert record.error == "RuntimeError: boom"

    # -- run records: listing ---------------------------------------------------------

    async def _claim_in_order(self, store: Store, runs: Sequence[tuple[str, str]]) -> None:
        for run_id, workflow in runs:
            await store.claim_run(run_id, workflow, None, owner="a", lease_seconds=LIVE)
            await asyncio.sleep(0.01)  # distinct creation times, also for coarse clocks

    @store_test("records_runs")
    async def test_list_runs_filters_by_status_and_workflow(self, store: Store) -> None:
        """``list_runs`` filters by status, by workflow, and by both."""
        runs = [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("b2", "B")]
        await self._claim_in_order(store, runs)
        await store.finish_run("a1", "a", "completed", result=1, has_result=True)
        await store.finish_run("b1", "a", "failed", error="E: x")
        await store.finish_run("a3", "a", "failed", error="E: y")

        async def ids(**filters: Any) -> set[str]:
            listed = await store.list_runs(**filters)
            assert all(isinstance(r, RunRecord) for r in listed)
            return {r.run_id for r in listed}

        assert await ids() == {"a1", "a2", "a3", "b1", "b2"}
        assert await ids(status="completed") == {"a1"}
        assert await ids(status="failed") == {"b1", "a3"}
        assert await ids(status="running") == {"a2", "b2"}
        assert await ids(workflow="A") == {"a1", "a2", "a3"}
        assert await ids(workflow="B", status="running") == {"b2"}
        assert await ids(workflow="C") == set()
        listed = await store.list_runs(status="completed")
        assert listed[0].result == 1
        assert listed[0].workflow == "A"

    @store_test("records_runs")
    async def test_list_runs_newest_first(self, store: Store) -> None:
        """``list_runs`` orders runs newest first."""
        await self._claim_in_order(store, [("r1", "A"), ("r2", "B"), ("r3", "A"), ("r4", "A")])
        assert [r.run_id for r in await store.list_runs()] == ["r4", "r3", "r2", "r1"]
        assert [r.run_id for r in await store.list_runs(workflow="A")] == ["r4", "r3", "r1"]

    @store_test("records_runs")
    async def test_list_runs_respects_limit(self, store: Store) -> None:
        """``list_runs(limit=n)`` returns the n newest matching runs."""
        await self._claim_in_order(store, [(f"r{i}", "A") for i in range(5)])
        assert [r.run_id for r in await store.list_runs(limit=2)] == ["r4", "r3"]
        assert [r.run_id for r in await store.list_runs(workflow="A", limit=1)] == ["r4"]
        assert len(await store.list_runs(limit=100)) == 5

    @store_test()
    async def test_list_runs_unsupported_or_empty(self, store: Store) -> None:
        """Without run records, ``list_runs`` says so (or lists nothing); with them, empty."""
        try:
            listed = await store.list_runs()
        except UnsupportedOperation:
            assert not self.records_runs, "list_runs is unsupported but records_runs is True"
            return
        assert list(listed) == []

    # -- run records: cancelled and dead ----------------------------------------------

    @store_test("records_runs", "manages_runs")
    async def test_finish_run_dead_or_cancelled_refuses_claims(self, store: Store) -> None:
        """``finish_run`` with ``dead`` or ``cancelled`` stores the error and clears the
        lease, and from then on no claim is granted (only ``reopen_run`` revives it)."""
        statuses: tuple[FinalStatus, ...] = ("dead", "cancelled")
        for status in statuses:
            run_id = f"run-{status}"
            claim = await store.claim_run(run_id, "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
            await asyncio.sleep(0.05)
            await store.finish_run(run_id, "a", status, error=f"{status}: why ✓")
            record = await self._run_record(store, run_id)
            assert (record.status, record.error) == (status, f"{status}: why ✓")
            assert (record.owner, record.lease_expires_at) == (None, None)
            assert (record.has_result, record.inputs) == (False, {"n": 1})
            assert record.updated_at is not None
            assert claim.record.updated_at is not None
            assert record.updated_at > claim.record.updated_at
            for owner, takeover in (("a", None), ("b", None), ("b", "a")):
                refused = await store.claim_run(
                    run_id, "wf", None, owner=owner, lease_seconds=LIVE, takeover_from=takeover
                )
                assert refused.acquired is False, f"a {status} run was claimed by {owner}"
                assert refused.record.status == status
            assert await store.renew_lease(run_id, "a", LIVE) is False
            assert (await self._run_record(store, run_id)).status == status

    @store_test("records_runs", "manages_runs")
    async def test_list_runs_filters_cancelled_and_dead(self, store: Store) -> None:
        """``list_runs`` filters by the statuses ``cancelled`` and ``dead`` too."""
        await self._claim_in_order(store, [("c1", "A"), ("d1", "A"), ("c2", "B"), ("r1", "A")])
        await store.finish_run("c1", "a", "cancelled", error="cancelled")
        await store.finish_run("c2", "a", "cancelled", error="cancelled")
        await store.finish_run("d1", "a", "dead", error="dead-lettered")
        assert [r.run_id for r in await store.list_runs(status="cancelled")] == ["c2", "c1"]
        assert [r.run_id for r in await store.list_runs(status="dead")] == ["d1"]
        assert [r.run_id for r in await store.list_runs(status="cancelled", workflow="A")] == ["c1"]
        assert [r.run_id for r in await store.list_runs(status="running")] == ["r1"]
