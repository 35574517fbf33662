"""Steering runs: ``request_cancel`` (and what ``checkpoint_step`` then answers),
``reopen_run`` and ``delete_runs``. Needs ``records_runs`` and ``manages_runs``."""

from __future__ import annotations

import asyncio
import time

from ..store import RunRecord, RunStatus, Store
from ._harness import LIVE, ContractHarness, store_test

_ALL: tuple[RunStatus, ...] = ("running", "completed", "failed", "cancelled", "dead")


class ControlChecks(ContractHarness):
    """Cancellation, reopening and deletion of runs."""

    async def _assert_claims_refused(self, store: Store, run_id: str, status: RunStatus) -> None:
        """Nobody can claim the run (its former owner ``a`` included), which stays ``status``."""
        for owner, takeover in (("a", None), ("b", None), ("b", "a")):
            claim = await store.claim_run(
                run_id, "wf", None, owner=owner, lease_seconds=LIVE, takeover_from=takeover
            )
            assert claim.acquired is False, f"a {status} run was claimed by {owner!r}"
            assert claim.record.status == status
        assert (await self._run_record(store, run_id)).status == status

    async def _ended_run(self, store: Store, run_id: str, status: RunStatus) -> RunRecord:
        """A run of owner ``a`` with one step and one signal, left in ``status``."""
        await store.claim_run(run_id, "wf", {"id": run_id}, owner="a", lease_seconds=LIVE)
        await store.set_step(run_id, "s", run_id)
        await store.set_signal(run_id, "go", run_id)
        if status != "running":
            completed = status == "completed"
            await store.finish_run(
                run_id,
                "a",
                status,
                result=run_id if completed else None,
                has_result=completed,
                error=None if completed else f"E: {status}",
            )
        return await self._run_record(store, run_id)

    # -- request_cancel ---------------------------------------------------------------

    @store_test("records_runs", "manages_runs")
    async def test_request_cancel_unknown_run_is_none(self, store: Store) -> None:
        """``request_cancel`` of a run without a record is None and creates none."""
        assert await store.request_cancel("no-such-run") is None
        await store.set_step("steps-only", "s", 1)
        assert await store.request_cancel("steps-only") is None
        assert await store.get_run("steps-only") is None

    @store_test("records_runs", "manages_runs")
    async def test_request_cancel_of_executing_run_asks_it_to_stop(self, store: Store) -> None:
        """A running run with a live lease stays running and owned, with
        ``cancel_requested``; its checkpoints are recorded and answer False."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        assert await store.checkpoint_step("run-1", "before", 1) is True
        record = await store.request_cancel("run-1")
        assert record is not None
        for current in (record, await self._run_record(store, "run-1")):
            assert (current.status, current.owner) == ("running", "a")
            assert current.cancel_requested is True
        again = await store.request_cancel("run-1")
        assert again is not None
        assert (again.status, again.owner, again.cancel_requested) == ("running", "a", True)
        assert await store.checkpoint_step("run-1", "after", 2, attempt=2) is False
        assert await store.checkpoint_step("run-1", "after#1", None) is False
        assert await store.get_step("run-1", "after") == (True, 2)
        assert await store.get_step("run-1", "after#1") == (True, None)
        listed = {
            step.step_id: (step.value, step.attempt) for step in await store.list_steps("run-1")
        }
        assert listed == {"before": (1, 1), "after": (2, 2), "after#1": (None, 1)}
        loaded = await store.load_steps("run-1")
        if loaded is not None:
            assert dict(loaded) == {"before": 1, "after": 2, "after#1": None}
        # The owner keeps its lease until it stops; other runs go on.
        assert await store.renew_lease("run-1", "a", LIVE) is True
        refused = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert refused.acquired is False
        assert refused.record.cancel_requested is True
        await store.claim_run("run-2", "wf", None, owner="a", lease_seconds=LIVE)
        assert await store.checkpoint_step("run-2", "s", 1) is True
        assert await store.checkpoint_step("no-record", "s", 1) is True

    @store_test("records_runs", "manages_runs")
    async def test_finish_run_cancelled_clears_cancel_requested(self, store: Store) -> None:
        """The owner stopping on request records ``cancelled``: the request is cleared,
        checkpoints answer True again, and no claim is granted."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.request_cancel("run-1")
        await store.finish_run("run-1", "a", "cancelled", error="cancelled")
        record = await self._run_record(store, "run-1")
        assert (record.status, record.cancel_requested) == ("cancelled", False)
        assert (record.owner, record.lease_expires_at) == (None, None)
        assert await store.checkpoint_step("run-1", "late", 1) is True
        await self._assert_claims_refused(store, "run-1", "cancelled")
        after = await store.request_cancel("run-1")
        assert after is not None
        assert (after.status, after.cancel_requested) == ("cancelled", False)

    @store_test("records_runs", "manages_runs")
    async def test_cancel_requested_cleared_by_any_outcome(self, store: Store) -> None:
        """A run asked to stop that completes or fails first keeps that outcome, and the
        request is cleared."""
        for status in ("completed", "failed"):
            run_id = f"run-{status}"
            await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=LIVE)
            await store.request_cancel(run_id)
            if status == "completed":
                await store.finish_run(run_id, "a", "completed", result=0, has_result=True)
            else:
                await store.finish_run(run_id, "a", "failed", error="E: x")
            record = await self._run_record(store, run_id)
            assert (record.status, record.cancel_requested) == (status, False)
            assert await store.checkpoint_step(run_id, "late", 1) is True

    @store_test("records_runs", "manages_runs")
    async def test_request_cancel_of_idle_run_cancels_at_once(self, store: Store) -> None:
        """A running run whose lease expired or was released, and a failed run, are
        cancelled at once: no one executes them to notice a request."""
        lease = self.short_lease_seconds
        await store.claim_run("expired", "wf", None, owner="a", lease_seconds=lease)
        await store.claim_run("released", "wf", None, owner="a", lease_seconds=LIVE)
        await store.release_run("released", "a")
        await store.claim_run("failed", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("failed", "a", "failed", error="E: x")
        await asyncio.sleep(lease * 2 + 0.05)
        for run_id in ("expired", "released", "failed"):
            record = await store.request_cancel(run_id)
            assert record is not None
            for current in (record, await self._run_record(store, run_id)):
                assert current.status == "cancelled", f"{run_id}: {current.status}"
                assert current.cancel_requested is False
            assert await store.checkpoint_step(run_id, "late", 1) is True
            await self._assert_claims_refused(store, run_id, "cancelled")

    @store_test("records_runs", "manages_runs")
    async def test_request_cancel_leaves_finished_runs_alone(self, store: Store) -> None:
        """Completed, cancelled and dead runs are returned unchanged."""
        await self._ended_run(store, "completed", "completed")
        await store.claim_run("no-result", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("no-result", "a", "completed", has_result=False)
        await self._ended_run(store, "cancelled", "cancelled")
        await self._ended_run(store, "dead", "dead")
        await asyncio.sleep(0.01)
        for run_id in ("completed", "no-result", "cancelled", "dead"):
            before = await self._run_record(store, run_id)
            assert await store.request_cancel(run_id) == before
            assert await store.get_run(run_id) == before
        await self._assert_claims_refused(store, "completed", "completed")

    @store_test("records_runs", "manages_runs")
    async def test_claim_after_expiry_carries_cancel_requested(self, store: Store) -> None:
        """A run asked to stop whose owner vanished is claimed with ``cancel_requested``
        still set, so the new owner stops it rather than running it on."""
        lease = self.short_lease_seconds
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        await store.request_cancel("run-1")
        await asyncio.sleep(lease * 2 + 0.05)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True
        assert claim.record.cancel_requested is True
        assert await store.checkpoint_step("run-1", "s", 1) is False

    # -- reopen_run -------------------------------------------------------------------

    @store_test("records_runs", "manages_runs")
    async def test_reopen_run_revives_failed_cancelled_and_dead_runs(self, store: Store) -> None:
        """A failed, cancelled or dead run becomes running with no owner, no recoveries and
        no cancellation; its steps stay, and anyone may claim it."""
        lease = self.short_lease_seconds
        for status in ("failed", "cancelled"):
            await self._ended_run(store, status, status)
        await store.claim_run("asked", "wf", {"id": "asked"}, owner="a", lease_seconds=LIVE)
        await store.set_step("asked", "s", "asked")
        await store.request_cancel("asked")
        await store.finish_run("asked", "a", "cancelled", error="cancelled")
        await store.claim_run("dead", "wf", {"id": "dead"}, owner="a", lease_seconds=lease)
        await store.set_step("dead", "s", "dead")
        await asyncio.sleep(lease * 2 + 0.05)
        await store.claim_run("dead", "wf", {"id": "dead"}, owner="b", lease_seconds=LIVE)
        await store.finish_run("dead", "b", "dead", error="dead-lettered")
        for run_id in ("failed", "cancelled", "asked", "dead"):
            record = await store.reopen_run(run_id)
            assert record is not None
            for current in (record, await self._run_record(store, run_id)):
                assert current.status == "running", f"{run_id}: {current.status}"
                assert (current.owner, current.lease_expires_at) == (None, None)
                assert (current.recoveries, current.cancel_requested) == (0, False)
                assert (current.workflow, current.inputs) == ("wf", {"id": run_id})
            assert await store.get_step(run_id, "s") == (True, run_id)
            claim = await store.claim_run(run_id, "wf", None, owner="z", lease_seconds=LIVE)
            assert claim.acquired is True, f"the reopened run {run_id} was not claimable"
            assert (claim.record.owner, claim.record.recoveries) == ("z", 0)
            assert await store.checkpoint_step(run_id, "next", 1) is True

    @store_test("records_runs", "manages_runs")
    async def test_reopen_run_leaves_completed_and_running_runs_alone(self, store: Store) -> None:
        """A completed or running run (also one asked to stop) is returned unchanged; an
        unknown run is None."""
        await self._ended_run(store, "completed", "completed")
        await self._ended_run(store, "running", "running")
        await self._ended_run(store, "asked", "running")
        await store.request_cancel("asked")
        await asyncio.sleep(0.01)
        for run_id in ("completed", "running", "asked"):
            before = await self._run_record(store, run_id)
            assert await store.reopen_run(run_id) == before
            assert await store.get_run(run_id) == before
        assert await store.reopen_run("no-such-run") is None
        assert await store.get_run("no-such-run") is None

    # -- delete_runs ------------------------------------------------------------------

    async def _assert_gone(self, store: Store, run_id: str) -> None:
        assert await store.get_run(run_id) is None, f"{run_id} was not deleted"
        assert await store.get_step(run_id, "s") == (False, None)
        assert await store.get_signal(run_id, "go") == (False, None)
        assert list(await store.list_steps(run_id)) == []
        assert list(await store.list_signals(run_id)) == []
        assert dict(await store.load_steps(run_id) or {}) == {}

    async def _assert_kept(self, store: Store, run_id: str, status: RunStatus) -> None:
        record = await store.get_run(run_id)
        assert record is not None, f"{run_id} was deleted"
        assert record.status == status
        assert await store.get_step(run_id, "s") == (True, run_id)
        assert await store.get_signal(run_id, "go") == (True, run_id)
        assert [signal.name for signal in await store.list_signals(run_id)] == ["go"]

    async def _runs_around_cutoff(
        self, store: Store, old: dict[str, RunStatus], new: dict[str, RunStatus]
    ) -> float:
        for run_id, status in old.items():
            await self._ended_run(store, run_id, status)
        await asyncio.sleep(0.05)
        cutoff = time.time()
        await asyncio.sleep(0.05)
        for run_id, status in new.items():
            await self._ended_run(store, run_id, status)
        return cutoff

    @store_test("records_runs", "manages_runs")
    async def test_delete_runs_deletes_old_runs_in_statuses(self, store: Store) -> None:
        """Runs in the given statuses last changed before the cutoff go, with their steps
        and signals, and are counted; every other run stays as it was."""
        old: dict[str, RunStatus] = {
            "old-completed": "completed",
            "old-failed": "failed",
            "old-dead": "dead",
            "old-cancelled": "cancelled",
            "old-running": "running",
        }
        new: dict[str, RunStatus] = {"old-completed-2": "completed", "new-failed": "failed"}
        cutoff = await self._runs_around_cutoff(store, old, new)
        deleted = await store.delete_runs(
            finished_before=cutoff, statuses=("completed", "failed", "dead")
        )
        assert deleted == 3
        for run_id in ("old-completed", "old-failed", "old-dead"):
            await self._assert_gone(store, run_id)
        kept: dict[str, RunStatus] = {**old, **new}
        for run_id in ("old-completed", "old-failed", "old-dead"):
            del kept[run_id]
        for run_id, status in kept.items():
            await self._assert_kept(store, run_id, status)
        assert {run.run_id for run in await store.list_runs()} == set(kept)
        again = await store.delete_runs(
            finished_before=cutoff, statuses=("completed", "failed", "dead")
        )
        assert again == 0

    @store_test("records_runs", "manages_runs")
    async def test_delete_runs_running_only_when_listed(self, store: Store) -> None:
        """A running run is deleted only when ``running`` is among the statuses."""
        old: dict[str, RunStatus] = {"old-running": "running", "old-completed": "completed"}
        cutoff = await self._runs_around_cutoff(store, old, {})
        assert await store.delete_runs(finished_before=cutoff, statuses=("completed",)) == 1
        await self._assert_kept(store, "old-running", "running")
        assert await store.delete_runs(finished_before=cutoff, statuses=("running",)) == 1
        await self._assert_gone(store, "old-running")

    @store_test("records_runs", "manages_runs")
    async def test_delete_runs_without_statuses_or_old_runs_deletes_nothing(
        self, store: Store
    ) -> None:
        """An empty ``statuses`` deletes nothing, and so does a cutoff before every run."""
        old: dict[str, RunStatus] = {f"old-{status}": status for status in _ALL}
        cutoff = await self._runs_around_cutoff(store, old, {})
        assert await store.delete_runs(finished_before=cutoff, statuses=()) == 0
        assert await store.delete_runs(finished_before=time.time() - 3600, statuses=_ALL) == 0
        for run_id, status in old.items():
            await self._assert_kept(store, run_id, status)
