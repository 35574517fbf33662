"""Run identity: a claim of a run on record for another workflow or other inputs changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ..records import RunRecord
from ..store import Store
from ._harness import LIVE, ContractHarness, store_test

DIGEST_A = "a" * 32
DIGEST_B = "b" * 32


def _unchanged(record: RunRecord) -> RunRecord:
    """The parts of a record a refused claim must leave as they were."""
    return dataclasses.replace(record, steps=(), signals=())


class IdentityChecks(ContractHarness):
    """``claim_run`` keeps a run's workflow and input digest, and refuses other callers."""

    @store_test("records_runs")
    async def test_a_new_record_keeps_its_input_digest(self, store: Store) -> None:
        """The digest a claim creates a run with comes back from every read of the record."""
        claim = await store.claim_run(
            "run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE, input_digest=DIGEST_A
        )
        assert claim.acquired
        assert claim.record.input_digest == DIGEST_A
        assert (await self._run_record(store, "run-1")).input_digest == DIGEST_A
        listed = [r for r in await store.list_runs() if r.run_id == "run-1"]
        assert [r.input_digest for r in listed] == [DIGEST_A]

    @store_test("records_runs")
    async def test_another_workflow_is_refused_and_nothing_changes(self, store: Store) -> None:
        """A failed run (which its own workflow would resume) is refused to another one."""
        await store.claim_run(
            "run-1", "shop.ship", {"n": 1}, owner="a", lease_seconds=LIVE, input_digest=DIGEST_A
        )
        await store.finish_run("run-1", "a", "failed", error="ValueError: x")
        before = await self._run_record(store, "run-1")
        await asyncio.sleep(0.01)  # a write now would show in updated_at
        claim = await store.claim_run(
            "run-1", "shop.refund", {"n": 1}, owner="b", lease_seconds=LIVE, input_digest=DIGEST_A
        )
        assert claim.acquired is False
        assert claim.record.workflow == "shop.ship"
        assert _unchanged(await self._run_record(store, "run-1")) == _unchanged(before)

    @store_test("records_runs")
    async def test_other_inputs_are_refused_and_nothing_changes(self, store: Store) -> None:
        """Whatever the status: completed without a result, failed, or running unowned."""
        for status in ("completed", "failed", "released"):
            run_id = f"run-{status}"
            await store.claim_run(
                run_id, "wf", {"n": 1}, owner="a", lease_seconds=LIVE, input_digest=DIGEST_A
            )
            if status == "released":
                await store.release_run(run_id, "a")
            else:
                await store.finish_run(run_id, "a", status)  # type: ignore[arg-type]
            before = await self._run_record(store, run_id)
            await asyncio.sleep(0.01)
            claim = await store.claim_run(
                run_id, "wf", {"n": 2}, owner="b", lease_seconds=LIVE, input_digest=DIGEST_B
            )
            assert claim.acquired is False, status
            assert claim.record.input_digest == DIGEST_A
            assert _unchanged(await self._run_record(store, run_id)) == _unchanged(before)

    @store_test("records_runs")
    async def test_the_same_digest_or_none_is_granted(self, store: Store) -> None:
        """Equal digests, or a caller without one, are the same run as far as the store knows."""
        await store.claim_run(
            "run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE, input_digest=DIGEST_A
        )
        await store.release_run("run-1", "a")
        same = await store.claim_run(
            "run-1", "wf", {"n": 1}, owner="b", lease_seconds=LIVE, input_digest=DIGEST_A
        )
        assert same.acquired
        await store.release_run("run-1", "b")
        unknown = await store.claim_run("run-1", "wf", {"n": 1}, owner="c", lease_seconds=LIVE)
        assert unknown.acquired
        assert unknown.record.input_digest == DIGEST_A

    @store_test("records_runs")
    async def test_a_record_without_digest_keeps_none(self, store: Store) -> None:
        """A run recorded without a digest (by a version before 0.4) is not compared, and
        keeps no digest: the engine reads that as "engine step ids may be old-style"."""
        await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        await store.release_run("run-1", "a")
        claim = await store.claim_run(
            "run-1", "wf", {"n": 9}, owner="b", lease_seconds=LIVE, input_digest=DIGEST_B
        )
        assert claim.acquired
        assert claim.record.input_digest is None
        assert (await self._run_record(store, "run-1")).input_digest is None

    @store_test("records_runs")
    async def test_a_refused_identity_is_refused_also_to_the_owner(self, store: Store) -> None:
        """Not even the run's own owner may claim it for another workflow."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        claim = await store.claim_run("run-1", "other", None, owner="a", lease_seconds=LIVE)
        if claim.acquired:
            pytest.fail("a claim for another workflow was granted to the run's owner")
        assert claim.record.workflow == "wf"
