"""Recovery reads every running run, page by page, oldest first: an old orphan behind
more live runs than one page (or the old 1,000-run window) is still recovered."""

from __future__ import annotations

import time
from typing import Any

from durable import Workflow
from durable.operations import SCAN_PAGE

LIVE_RUNS = 1_200  # more than the 1,000 newest running runs recovery used to look at


async def test_an_old_orphan_behind_many_live_runs_is_recovered(make_wf) -> None:
    wf: Workflow = make_wf()
    ran: list[int] = []

    @wf.task
    async def mark(n: int) -> int:
        ran.append(n)
        return n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await mark(n)

    await wf.list_runs(limit=1)
    store = wf.store
    # The oldest run's lease ran out (its owner is gone); then many live ones start.
    claim = await store.claim_run(
        "job-0", job.workflow_id, {"n": 0}, owner="gone-host:1:x", lease_seconds=-1
    )
    assert claim.acquired
    time.sleep(0.002)  # noqa: ASYNC251 - a later creation time for every live run
    for n in range(1, LIVE_RUNS + 1):
        await store.claim_run(
            f"job-{n}", job.workflow_id, {"n": n}, owner="other-host:1:y", lease_seconds=600
        )
    assert LIVE_RUNS > 2 * SCAN_PAGE  # the scan takes more than two pages

    assert await wf.recover() == ["job-0"]
    assert ran == [0]
    record = await wf.get_run("job-0")
    assert record is not None
    assert (record.status, record.result) == ("completed", 0)


async def test_orphans_are_recovered_oldest_first(make_wf) -> None:
    wf: Workflow = make_wf()
    order: list[int] = []

    @wf.task
    async def mark(n: int) -> int:
        order.append(n)
        return n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> Any:
        return await mark(n)

    await wf.list_runs(limit=1)
    for n in (3, 1, 2):  # created in this order
        await wf.store.claim_run(
            f"job-{n}", job.workflow_id, {"n": n}, owner="gone:1:x", lease_seconds=-1
        )
        time.sleep(0.002)  # noqa: ASYNC251
    assert await wf.recover() == ["job-3", "job-1", "job-2"]
