"""Workers recovering at once take different orphans (Store.claim_orphans): each run
is executed by one of them, and no worker sits waiting on a run another one took."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from durable import InMemoryStore, RunRecord, Workflow
from durable.records import RunStatus

ORPHANS = 20


class SlowScans(InMemoryStore):
    """A store whose scans take a while, like a query over the network: two workers'
    recovery passes then both read the orphans before either has claimed one."""

    async def scan_runs(
        self, status: RunStatus, *, cursor: str | None = None, limit: int = 500
    ) -> tuple[Sequence[RunRecord], str | None]:
        await asyncio.sleep(0.01)
        return await super().scan_runs(status, cursor=cursor, limit=limit)


def _worker(store: InMemoryStore, name: str, ran: list[tuple[str, int]]) -> Workflow:
    wf = Workflow("jobs", db=store)

    @wf.task
    async def work(n: int) -> int:
        ran.append((name, n))
        await asyncio.sleep(0.02)  # the two workers' recoveries overlap
        return n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await work(n)

    assert job.workflow_id == "jobs.job"

    return wf


async def test_two_workers_recovering_at_once_take_different_orphans() -> None:
    store = SlowScans()
    ran: list[tuple[str, int]] = []
    first, second = _worker(store, "first", ran), _worker(store, "second", ran)
    await first.list_runs(limit=1)  # set the store up
    for n in range(ORPHANS):
        claim = await store.claim_run(
            f"job-{n}", "jobs.job", {"n": n}, owner="gone-host:1:x", lease_seconds=-1
        )
        assert claim.acquired
    try:
        recovered: list[list[str]] = await asyncio.gather(first.recover(), second.recover())
    finally:
        await first.close()
        await second.close()
    # Without claim_orphans both workers start every orphan: one executes it, the other
    # waits on it, and both report it recovered.
    assert not set(recovered[0]) & set(recovered[1])
    assert sorted(recovered[0] + recovered[1]) == sorted(f"job-{n}" for n in range(ORPHANS))
    assert sorted(n for _, n in ran) == list(range(ORPHANS))  # each executed once
    for n in range(ORPHANS):
        record = await store.get_run(f"job-{n}")
        assert record is not None
        assert (record.status, record.result, record.recoveries) == ("completed", n, 1)


async def test_a_store_that_cannot_claim_orphans_is_still_recovered(make_wf: Any) -> None:
    """The scan-and-claim path stays for stores without the capability (SQLite)."""
    wf: Workflow = make_wf()

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return n

    await wf.list_runs(limit=1)
    await wf.store.claim_run(
        "job-1", job.workflow_id, {"n": 1}, owner="gone-host:1:x", lease_seconds=-1
    )
    assert await wf.recover() == ["job-1"]
    record = await wf.get_run("job-1")
    assert record is not None
    assert (record.status, record.result) == ("completed", 1)
