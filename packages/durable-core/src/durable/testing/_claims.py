"""Run ownership: the permissive defaults, ``claim_run``, leases, recoveries."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from ..store import RunClaim, RunRecord, Store
from ._harness import FALSY, LIVE, UNICODE, ContractHarness, store_test


class ClaimChecks(ContractHarness):
    """Run ownership: the permissive defaults, ``claim_run``, leases, recoveries."""

    # -- the seed's run methods and the permissive defaults --------------------------

    @store_test()
    async def test_seed_run_methods_accept_any_run(self, store: Store) -> None:
        """``mark_run_done`` / ``mark_run_failed`` work on runs with steps, and keep them."""
        await store.set_step("run-1", "s", 1)
        await store.set_step("run-2", "s", 2)
        await store.mark_run_done("run-1")
        await store.mark_run_failed("run-2", "RuntimeError: boom")
        assert await store.get_step("run-1", "s") == (True, 1)
        assert await store.get_step("run-2", "s") == (True, 2)

    @store_test()
    async def test_store_without_records_grants_claims(self, store: Store) -> None:
        """A store that keeps no run records grants every claim and never fails a call."""
        if self.records_runs:
            pytest.skip(f"{type(self).__name__} records runs; see the claim tests")
        first = await store.claim_run("run-1", "wf", {"x": 1}, owner="a", lease_seconds=LIVE)
        second = await store.claim_run("run-1", "wf", {"x": 1}, owner="b", lease_seconds=LIVE)
        assert first.acquired
        assert second.acquired
        assert first.record.status == "running"
        assert await store.renew_lease("run-1", "b", LIVE) in (True, False)
        await store.release_run("run-1", "b")
        await store.finish_run("run-1", "b", "completed", result=1, has_result=True)
        await store.finish_run("run-2", "b", "failed", error="ValueError: x")
        assert isinstance(await store.get_run("run-1"), RunRecord | None)

    # -- run records: claims --------------------------------------------------------------

    @store_test("records_runs")
    async def test_claim_new_run_creates_record(self, store: Store) -> None:
        """Claiming a new run records its workflow, inputs, running status, owner and lease."""
        inputs = {"order_id": "42", "items": [1, 2], "note": UNICODE}
        before = time.time()
        claim = await store.claim_run("run-1", "shop.order", inputs, owner="a", lease_seconds=LIVE)
        after = time.time()
        assert isinstance(claim, RunClaim)
        assert claim.acquired is True
        for record in (claim.record, await self._run_record(store, "run-1")):
            assert record.run_id == "run-1"
            assert record.workflow == "shop.order"
            assert record.status == "running"
            assert record.inputs == inputs
            assert record.owner == "a"
            assert record.lease_expires_at is not None
            assert before + LIVE - 1 <= record.lease_expires_at <= after + LIVE + 1
            assert record.has_result is False
            assert record.error is None
            assert isinstance(record.created_at, dt.datetime)
            assert isinstance(record.updated_at, dt.datetime)

    @store_test("records_runs")
    async def test_only_a_claim_that_made_the_record_says_created(self, store: Store) -> None:
        """``created`` is never claimed for a run on record: the engine skips its steps.

        A store may leave ``created`` False everywhere (the engine then loads the steps
        of every run); True says this claim made the record, so the run starts afresh.
        """
        first = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        assert first.acquired is True
        assert isinstance(first.created, bool)
        await store.checkpoint_step("run-1", "s", 1)
        await store.finish_run("run-1", "a", "failed", error="RuntimeError: boom")
        claims = [
            await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE),
            await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE),
        ]
        await store.finish_run("run-1", "b", "completed", result=2, has_result=True)
        claims.append(await store.claim_run("run-1", "wf", None, owner="c", lease_seconds=LIVE))
        assert [claim.acquired for claim in claims] == [True, False, False]
        assert [claim.created for claim in claims] == [False, False, False]

    @store_test("records_runs")
    async def test_run_timestamps_are_aware_and_current(self, store: Store) -> None:
        """``created_at``/``updated_at`` are timezone-aware datetimes of about now."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        record = await self._run_record(store, "run-1")
        now = dt.datetime.now(dt.UTC)
        for stamp in (record.created_at, record.updated_at):
            assert isinstance(stamp, dt.datetime)
            assert stamp.utcoffset() is not None, f"{stamp!r} has no timezone"
            assert abs((stamp - now).total_seconds()) < 60

    @store_test("records_runs")
    async def test_claim_refused_while_lease_live(self, store: Store) -> None:
        """Another owner is refused while the lease is live, and gets the current record."""
        await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="b", lease_seconds=LIVE)
        assert claim.acquired is False
        assert claim.record.run_id == "run-1"
        assert claim.record.status == "running"
        assert claim.record.owner == "a"
        assert claim.record.lease_expires_at is not None
        assert claim.record.lease_expires_at > time.time()
        assert (await self._run_record(store, "run-1")).owner == "a"

    @store_test("records_runs")
    async def test_claim_granted_after_lease_expiry(self, store: Store) -> None:
        """Once the owner's lease has expired, another owner's claim is granted."""
        lease = self.short_lease_seconds
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        await asyncio.sleep(lease * 2 + 0.05)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True
        assert claim.record.owner == "b"
        assert claim.record.status == "running"
        assert (await self._run_record(store, "run-1")).owner == "b"
        assert await store.renew_lease("run-1", "a", LIVE) is False

    @store_test("records_runs")
    async def test_claim_granted_with_takeover_from_current_owner(self, store: Store) -> None:
        """A live lease is taken over when the caller names its owner in ``takeover_from``."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        wrong = await store.claim_run(
            "run-1", "wf", None, owner="b", lease_seconds=LIVE, takeover_from="someone-else"
        )
        assert wrong.acquired is False
        claim = await store.claim_run(
            "run-1", "wf", None, owner="b", lease_seconds=LIVE, takeover_from="a"
        )
        assert claim.acquired is True
        assert claim.record.owner == "b"
        assert (await self._run_record(store, "run-1")).owner == "b"
        assert await store.renew_lease("run-1", "a", LIVE) is False

    @store_test("records_runs")
    async def test_claim_same_owner_reclaims(self, store: Store) -> None:
        """The owner of a live lease may claim its run again."""
        first = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        again = await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        assert again.acquired is True
        assert again.record.owner == "a"
        assert again.record.status == "running"
        assert again.record.inputs == {"n": 1}
        assert again.record.created_at == first.record.created_at

    @store_test("records_runs")
    async def test_claim_completed_with_result_refused(self, store: Store) -> None:
        """A run completed with a stored result is refused to everyone, with the result."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-1", "a", "completed", result={"total": 7}, has_result=True)
        for owner, takeover in (("a", None), ("b", None), ("b", "a")):
            claim = await store.claim_run(
                "run-1", "wf", None, owner=owner, lease_seconds=LIVE, takeover_from=takeover
            )
            assert claim.acquired is False
            assert claim.record.status == "completed"
            assert claim.record.has_result is True
            assert claim.record.result == {"total": 7}

    @store_test("records_runs")
    async def test_claim_completed_falsy_result_refused(self, store: Store) -> None:
        """A stored result of None, 0, False or "" still counts as a result."""
        for i, value in enumerate(FALSY):
            run_id = f"run-{i}"
            await store.claim_run(run_id, "wf", None, owner="a", lease_seconds=LIVE)
            await store.finish_run(run_id, "a", "completed", result=value, has_result=True)
            claim = await store.claim_run(run_id, "wf", None, owner="b", lease_seconds=LIVE)
            assert claim.acquired is False, f"a run with result {value!r} was claimed again"
            assert claim.record.has_result is True
            assert claim.record.result == value
            assert type(claim.record.result) is type(value)

    @store_test("records_runs")
    async def test_claim_completed_without_result_granted(self, store: Store) -> None:
        """A run completed without a storable result is granted (its body runs again)."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-1", "a", "completed", result=None, has_result=False)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True
        assert claim.record.status == "running"
        assert claim.record.owner == "b"

    @store_test("records_runs")
    async def test_claim_failed_run_granted_back_to_running(self, store: Store) -> None:
        """A failed run is granted to any owner and is running again."""
        await store.claim_run("run-1", "wf", {"n": 1}, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-1", "a", "failed", error="RuntimeError: boom")
        claim = await store.claim_run("run-1", "wf", {"n": 1}, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True
        assert claim.record.status == "running"
        assert claim.record.owner == "b"
        assert claim.record.error is None
        record = await self._run_record(store, "run-1")
        assert record.status == "running"
        assert record.owner == "b"
        assert record.inputs == {"n": 1}
        assert record.error is None

    @store_test("records_runs")
    async def test_concurrent_claim_exactly_one_acquires(self, store: Store) -> None:
        """Many owners claiming one new run at once: exactly one acquires it."""
        owners = [f"owner-{i}" for i in range(self.concurrency)]
        claims = await asyncio.gather(
            *(store.claim_run("run-1", "wf", {"n": 1}, owner=o, lease_seconds=LIVE) for o in owners)
        )
        self._assert_one_winner(claims, owners)
        winner = next(o for o, c in zip(owners, claims, strict=True) if c.acquired)
        assert (await self._run_record(store, "run-1")).owner == winner

    # -- run records: leases ----------------------------------------------------------

    @store_test("records_runs")
    async def test_renew_lease_by_owner(self, store: Store) -> None:
        """The owner renews its lease: True, and the lease now ends later."""
        lease = self.short_lease_seconds
        first = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        assert await store.renew_lease("run-1", "a", LIVE) is True
        record = await self._run_record(store, "run-1")
        assert record.owner == "a"
        assert first.record.lease_expires_at is not None
        assert record.lease_expires_at is not None
        assert record.lease_expires_at > first.record.lease_expires_at
        await asyncio.sleep(lease * 2 + 0.05)  # the first lease would have expired by now
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is False

    @store_test("records_runs")
    async def test_renew_lease_refused_to_other_owner(self, store: Store) -> None:
        """Renewing someone else's lease, or an unknown run's, is False and changes nothing."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        assert await store.renew_lease("run-1", "b", LIVE) is False
        assert await store.renew_lease("no-such-run", "a", LIVE) is False
        assert (await self._run_record(store, "run-1")).owner == "a"

    @store_test("records_runs")
    async def test_renew_lease_refused_after_finish(self, store: Store) -> None:
        """Once the run finished, its former owner cannot renew the lease."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-1", "a", "completed", result=1, has_result=True)
        assert await store.renew_lease("run-1", "a", LIVE) is False
        await store.claim_run("run-2", "wf", None, owner="a", lease_seconds=LIVE)
        await store.finish_run("run-2", "a", "failed", error="E: x")
        assert await store.renew_lease("run-2", "a", LIVE) is False

    @store_test("records_runs")
    async def test_release_run_lets_another_owner_claim(self, store: Store) -> None:
        """``release_run`` clears the owner, so another owner's claim succeeds at once."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.release_run("run-1", "a")
        record = await self._run_record(store, "run-1")
        assert record.owner is None
        assert record.status == "running"
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is True
        assert claim.record.owner == "b"

    @store_test("records_runs")
    async def test_release_run_by_other_owner_is_ignored(self, store: Store) -> None:
        """Only the owner can release a run; a release by anyone else changes nothing."""
        await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=LIVE)
        await store.release_run("run-1", "b")
        await store.release_run("no-such-run", "a")
        assert (await self._run_record(store, "run-1")).owner == "a"
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert claim.acquired is False

    # -- run records: recoveries ------------------------------------------------------

    @store_test("records_runs", "manages_runs")
    async def test_recoveries_count_takeovers_of_a_running_run(self, store: Store) -> None:
        """A claim taking a running run from another owner (its lease expired, or named
        in ``takeover_from``) adds one to ``recoveries``."""
        lease = self.short_lease_seconds
        claim = await store.claim_run("run-1", "wf", None, owner="a", lease_seconds=lease)
        assert claim.record.recoveries == 0
        await asyncio.sleep(lease * 2 + 0.05)
        claim = await store.claim_run("run-1", "wf", None, owner="b", lease_seconds=LIVE)
        assert (claim.acquired, claim.record.recoveries) == (True, 1)
        assert (await self._run_record(store, "run-1")).recoveries == 1
        claim = await store.claim_run(
            "run-1", "wf", None, owner="c", lease_seconds=LIVE, takeover_from="b"
        )
        assert (claim.acquired, claim.record.recoveries) == (True, 2)
        assert (await self._run_record(store, "run-1")).recoveries == 2

    @store_test("records_runs", "manages_runs")
    async def test_recoveries_not_counted_for_ordinary_claims(self, store: Store) -> None:
        """A new run, the owner claiming again, a refused claim, and claims of a failed,
        released or completed-without-result run add nothing to ``recoveries``."""

        async def claim(owner: str, takeover_from: str | None = None) -> int:
            granted = await store.claim_run(
                "run-1", "wf", None, owner=owner, lease_seconds=LIVE, takeover_from=takeover_from
            )
            assert granted.record.recoveries == (await self._run_record(store, "run-1")).recoveries
            return granted.record.recoveries

        assert await claim("a") == 0
        assert await claim("a") == 0  # the same owner again
        assert await claim("b") == 0  # refused: a's lease is live
        assert await claim("b", takeover_from="someone-else") == 0  # refused too
        await store.release_run("run-1", "a")
        assert await claim("b") == 0  # released: nobody vanished
        await store.finish_run("run-1", "b", "failed", error="E: x")
        assert await claim("c") == 0
        await store.finish_run("run-1", "c", "completed", has_result=False)
        assert await claim("d") == 0
        lease = self.short_lease_seconds
        await store.claim_run("run-2", "wf", None, owner="a", lease_seconds=lease)
        await asyncio.sleep(lease * 2 + 0.05)
        await store.claim_run("run-2", "wf", None, owner="b", lease_seconds=LIVE)
        again = await store.claim_run("run-2", "wf", None, owner="b", lease_seconds=LIVE)
        assert again.record.recoveries == 1, "the new owner claiming again counted"
        await store.finish_run("run-2", "b", "failed", error="E: x")
        after_failure = await store.claim_run("run-2", "wf", None, owner="c", lease_seconds=LIVE)
        assert after_failure.record.recoveries == 1, "claiming a failed run counted"
