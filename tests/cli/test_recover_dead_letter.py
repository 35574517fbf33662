"""``wf.recover()`` returns the runs it resumed: a run that the recovery dead-lettered
instead (more take-overs without progress than ``max_recoveries``) is not one of them,
whether the store claimed it (Store.claim_orphans) or the scan found it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from durable import InMemoryStore, Store, Workflow
from durable.backoff import constant
from durable.owners import local_owner_id
from durable_sqlite import SQLiteStore


def _dead_owner(token: str) -> str:
    return local_owner_id(2**22 + 1, token)  # a pid above pid_max: a process that is gone


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        memory = InMemoryStore()
        return lambda: memory
    return lambda: SQLiteStore(tmp_path / "jobs.db")


def _jobs(wf: Workflow, ran: list[str]) -> Any:
    @wf.task(retries=0)
    async def add(n: int) -> int:
        ran.append(f"job-{n}")
        return n * 10

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await add(n)

    return job


async def _orphan(store: Store, run_id: str, workflow: str, n: int, takeovers: int) -> None:
    """A run left running by a dead process, after ``takeovers`` take-overs by other
    processes that died before they checkpointed anything (no progress)."""
    owners = [_dead_owner(f"{run_id}-{i}") for i in range(takeovers + 1)]
    claim = await store.claim_run(run_id, workflow, {"n": n}, owner=owners[0], lease_seconds=30)
    assert claim.acquired
    for before, after in itertools.pairwise(owners):
        claim = await store.claim_run(
            run_id, workflow, {"n": n}, owner=after, lease_seconds=30, takeover_from=before
        )
        assert claim.acquired


async def test_a_dead_lettered_run_is_not_among_the_resumed(store) -> None:
    wf = Workflow("app", db=store(), max_recoveries=1, default_backoff=constant(0))
    ran: list[str] = []
    job = _jobs(wf, ran)
    async with wf:
        target = wf.store
        await _orphan(target, "job-1", job.workflow_id, 1, takeovers=0)  # one more is allowed
        await _orphan(target, "job-2", job.workflow_id, 2, takeovers=1)  # one more is too many
        record = await wf.get_run("job-2")
        assert record is not None
        assert record.recoveries_without_progress == 1

        assert await wf.recover() == ["job-1"]

        dead = await wf.get_run("job-2")
        assert dead is not None
        assert (dead.status, dead.owner) == ("dead", None)
        assert "dead-lettered" in (dead.error or "")
        done = await wf.get_run("job-1")
        assert done is not None
        assert (done.status, done.result) == ("completed", 10)
        assert ran == ["job-1"]
        assert await wf.recover() == []


async def test_max_recoveries_0_dead_letters_every_orphan_and_resumes_none(store) -> None:
    wf = Workflow("app", db=store(), max_recoveries=0, default_backoff=constant(0))
    ran: list[str] = []
    job = _jobs(wf, ran)
    async with wf:
        await _orphan(wf.store, "job-3", job.workflow_id, 3, takeovers=0)
        assert await wf.recover() == []
        run = await wf.get_run("job-3")
        assert run is not None
        assert run.status == "dead"
        assert ran == []


async def test_a_recovered_run_that_fails_is_still_listed(store) -> None:
    """Only a dead-lettered run is left out: a run that was resumed and then failed
    was resumed (its outcome is in its record)."""
    wf = Workflow("app", db=store(), default_backoff=constant(0))

    @wf.task(retries=0)
    async def explode(n: int) -> int:
        raise RuntimeError(f"boom {n}")

    @wf.workflow(id="bad-{n}")
    async def bad(n: int) -> int:
        return await explode(n)

    async with wf:
        await _orphan(wf.store, "bad-1", bad.workflow_id, 1, takeovers=0)
        assert await wf.recover() == ["bad-1"]
        run = await wf.get_run("bad-1")
        assert run is not None
        assert run.status == "failed"
