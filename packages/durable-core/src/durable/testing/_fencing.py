"""Fencing (``Store.fences_writes``): once a run is taken over, its old owner's steps,
attempts and outcome are refused, and only the new owner's values are kept.

Read from the store itself (a declared capability), not from a test-class flag: the
engine reads the same attribute to decide whether it passes ``owner=``.
"""

from __future__ import annotations

import pytest

from ..errors import LeaseLostError
from ..store import Store
from ._harness import LIVE, ContractHarness, store_test


async def _taken_over(store: Store) -> None:
    """``run-1`` claimed by ``a``, then taken over by ``b`` (who knows ``a`` is gone)."""
    assert (await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)).acquired
    taken = await store.claim_run(
        "run-1", "wf", {}, owner="b", lease_seconds=LIVE, takeover_from="a"
    )
    assert taken.acquired


class FencingChecks(ContractHarness):
    """A stale owner's writes fail with ``LeaseLostError`` and change nothing."""

    @staticmethod
    def _require_fencing(store: Store) -> None:
        if not store.fences_writes:
            pytest.skip(f"{type(store).__name__}.fences_writes is False")

    @store_test("records_runs")
    async def test_stale_owner_checkpoint_is_refused(self, store: Store) -> None:
        """After a take-over the old owner's checkpoint raises and writes nothing; the new
        owner's value of the same step stays."""
        self._require_fencing(store)
        await _taken_over(store)
        assert await store.checkpoint_step("run-1", "s", "new", owner="b") is True
        with pytest.raises(LeaseLostError, match="run-1"):
            await store.checkpoint_step("run-1", "s", "stale", owner="a")
        with pytest.raises(LeaseLostError):
            await store.checkpoint_step("run-1", "t", "stale", owner="a")
        assert await store.get_step("run-1", "s") == (True, "new")
        assert await store.get_step("run-1", "t") == (False, None)

    @store_test("records_runs")
    async def test_stale_owner_attempt_is_refused(self, store: Store) -> None:
        """A failed attempt noted by the old owner is refused; the new owner's count stays."""
        self._require_fencing(store)
        await _taken_over(store)
        await store.record_attempt("run-1", "s", 2, "E: x", owner="b")
        with pytest.raises(LeaseLostError):
            await store.record_attempt("run-1", "s", 5, "E: y", owner="a")
        assert dict(await store.load_attempts("run-1")) == {"s": 2}

    @store_test("records_runs")
    async def test_stale_owner_outcome_is_refused(self, store: Store) -> None:
        """``finish_run`` by the old owner answers False and leaves the run to the new one;
        the new owner's answers True."""
        self._require_fencing(store)
        await _taken_over(store)
        assert await store.finish_run("run-1", "a", "completed", result=1, has_result=True) is False
        record = await self._run_record(store, "run-1")
        assert (record.status, record.owner) == ("running", "b")
        assert await store.finish_run("run-1", "b", "completed", result=2, has_result=True) is True
        record = await self._run_record(store, "run-1")
        assert (record.status, record.result) == ("completed", 2)

    @store_test("records_runs")
    async def test_fenced_writes_need_a_running_run_of_that_owner(self, store: Store) -> None:
        """No record, a released run or a finished one: an owner's write is refused."""
        self._require_fencing(store)
        with pytest.raises(LeaseLostError):
            await store.checkpoint_step("unknown", "s", 1, owner="a")
        assert (await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)).acquired
        assert await store.checkpoint_step("run-1", "s", 1, owner="a") is True
        await store.release_run("run-1", "a")
        with pytest.raises(LeaseLostError):
            await store.checkpoint_step("run-1", "s#1", 1, owner="a")
        assert (await store.claim_run("run-2", "wf", {}, owner="a", lease_seconds=LIVE)).acquired
        assert await store.finish_run("run-2", "a", "failed", error="E: x") is True
        with pytest.raises(LeaseLostError):
            await store.record_attempt("run-2", "s", 1, "E: x", owner="a")
        # Unfenced writes (owner=None) are the seed's, and always apply.
        assert await store.checkpoint_step("run-2", "s", 3) is True
        assert await store.get_step("run-2", "s") == (True, 3)

    @store_test("records_runs")
    async def test_an_owners_outcome_of_a_run_with_no_record_makes_none(self, store: Store) -> None:
        """A run deleted (or never claimed) while its owner ran: the owner's finish is
        refused and no record is made, which would tie the run id to no workflow."""
        self._require_fencing(store)
        assert await store.finish_run("gone", "a", "completed", result=1, has_result=True) is False
        assert await store.get_run("gone") is None
