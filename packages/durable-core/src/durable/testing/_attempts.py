"""Failed attempts (``record_attempt`` / ``load_attempts``): kept with the run, so a
run recovered during a retry's backoff goes on counting instead of starting over."""

from __future__ import annotations

import time

from ..store import Store
from ._harness import LIVE, ContractHarness, store_test


class AttemptChecks(ContractHarness):
    """Attempts per step survive, are per run, are cleared by ``attempt=0``, and go with
    the run when it is deleted."""

    @store_test("records_runs", "manages_runs")
    async def test_attempts_are_kept_per_run_and_step(self, store: Store) -> None:
        """The last attempt noted per step is what ``load_attempts`` gives; 0 clears it."""
        for run_id in ("run-1", "run-2"):
            await store.claim_run(run_id, "wf", {}, owner="a", lease_seconds=LIVE)
        await store.record_attempt("run-1", "charge", 1, "E: 1")
        await store.record_attempt("run-1", "charge", 2, "E: 2")
        await store.record_attempt("run-1", "email", 1, "E: 3")
        await store.record_attempt("run-2", "charge", 3, "E: 4")
        assert dict(await store.load_attempts("run-1")) == {"charge": 2, "email": 1}
        assert dict(await store.load_attempts("run-2")) == {"charge": 3}
        assert dict(await store.load_attempts("no-such-run")) == {}
        await store.record_attempt("run-1", "charge", 0, "E: final")  # the failure was final
        assert dict(await store.load_attempts("run-1")) == {"email": 1}

    @store_test("records_runs", "manages_runs", "persistent")
    async def test_attempts_outlive_the_store_object(self, store: Store) -> None:
        """A new store object on the same data (a restarted process) sees the attempts."""
        await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)
        await store.record_attempt("run-1", "charge", 2, "E: x")
        again = await self.open_store_again()
        assert dict(await again.load_attempts("run-1")) == {"charge": 2}

    @store_test("records_runs", "manages_runs")
    async def test_attempts_go_with_a_deleted_run(self, store: Store) -> None:
        """``delete_runs`` takes a run's attempts with it: a new run of that id starts at 0."""
        await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)
        await store.record_attempt("run-1", "charge", 2, "E: x")
        await store.finish_run("run-1", "a", "failed", error="E: x")
        assert await store.delete_runs(finished_before=time.time() + 60, statuses=["failed"]) == 1
        await store.claim_run("run-1", "wf", {}, owner="a", lease_seconds=LIVE)
        assert dict(await store.load_attempts("run-1")) == {}
