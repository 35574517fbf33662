"""Progress: a checkpoint sets ``recoveries_without_progress`` back to 0, so only
take-overs in a row with no checkpoint between them (a poison run) count towards
dead-lettering; ``recoveries`` counts them all."""

from __future__ import annotations

from ..store import RunRecord, Store
from ._harness import LIVE, ContractHarness, store_test


class ProgressChecks(ContractHarness):
    """``recoveries_without_progress`` counts take-overs since the last checkpoint."""

    @store_test("records_runs", "manages_runs")
    async def test_checkpoint_clears_takeovers_without_progress(self, store: Store) -> None:
        """Two take-overs count 2; a checkpoint clears those without progress; the next
        take-over counts 1 of them (and 3 in all); reopening clears both."""
        assert (await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)).acquired
        for previous, owner in (("a", "b"), ("b", "c")):
            claim = await store.claim_run(
                "run-1", "wf", {}, owner=owner, lease_seconds=LIVE, takeover_from=previous
            )
            assert claim.acquired
        assert _counts(await self._run_record(store, "run-1")) == (2, 2)
        assert await store.checkpoint_step("run-1", "s", 1) is True
        assert _counts(await self._run_record(store, "run-1")) == (2, 0)
        claim = await store.claim_run(
            "run-1", "wf", {}, owner="d", lease_seconds=LIVE, takeover_from="c"
        )
        assert claim.acquired
        assert _counts(claim.record) == (3, 1)
        assert _counts(await self._run_record(store, "run-1")) == (3, 1)
        await store.finish_run("run-1", "d", "failed", error="E: x")
        assert _counts(await store.reopen_run("run-1")) == (0, 0)


def _counts(record: RunRecord | None) -> tuple[int, int]:
    assert record is not None
    return record.recoveries, record.recoveries_without_progress


class MarkProgressChecks(ContractHarness):
    """``mark_progress``: the owner's word that its resumed run reached a wait."""

    @store_test("records_runs", "manages_runs")
    async def test_mark_progress_clears_the_count_for_its_owner_only(self, store: Store) -> None:
        """Only the run's owner clears ``recoveries_without_progress``; ``recoveries``
        stays; another owner's mark changes nothing."""
        assert (await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)).acquired
        claim = await store.claim_run(
            "run-1", "wf", {}, owner="b", lease_seconds=LIVE, takeover_from="a"
        )
        assert claim.acquired
        await store.mark_progress("run-1", "a")  # a lost the run: not its word to give
        assert _counts(await self._run_record(store, "run-1")) == (1, 1)
        await store.mark_progress("run-1", "b")
        assert _counts(await self._run_record(store, "run-1")) == (1, 0)
        record = await self._run_record(store, "run-1")
        assert (record.status, record.owner) == ("running", "b")
        await store.mark_progress("no-such-run", "b")  # nothing to do, no record made
        assert await store.get_run("no-such-run") is None
