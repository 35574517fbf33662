"""Recovery: ``wf.recover()`` and ``wf.worker()`` finish runs whose owner is gone, from
their stored inputs; a run whose process keeps dying is dead-lettered."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import sqlite3
import time
from typing import Any

import pytest

from durable import RunFailedError, Workflow


class Boom(Exception):
    pass


def jobs(wf: Workflow, ran: list[str]) -> Any:
    @wf.task(retries=0)
    async def add(n: int, i: int) -> int:
        ran.append(f"job-{n} s{i}")
        return n * i

    @wf.workflow(id="job-{n}")
    async def job(n: int, steps: int = 3) -> int:
        return sum([await add(n, i, step_id=f"s{i}") for i in range(steps)])

    return job


async def ready(wf: Workflow) -> Any:
    await wf.list_runs(limit=1)  # sets the store up
    return wf.store


async def orphan(
    wf: Workflow, run_id: str, workflow: str, inputs: Any, owner: str, lease: float = 30.0
) -> None:
    """Leave a run ``running`` under ``owner``, as a process that died would."""
    store = await ready(wf)
    claim = await store.claim_run(run_id, workflow, inputs, owner=owner, lease_seconds=lease)
    assert claim.acquired


async def test_recover_resumes_orphans_from_their_stored_inputs(make_wf, dead_owner) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    job = jobs(wf, ran)
    store = await ready(wf)
    # job-2 died after its first step; job-5 before any (a dead pid on this host).
    await orphan(wf, "job-2", job.workflow_id, {"n": 2, "steps": 3}, dead_owner("a"))
    await store.set_step("job-2", "s0", 0)
    await orphan(wf, "job-5", job.workflow_id, {"n": 5, "steps": 2}, dead_owner("b"))

    assert sorted(await wf.recover()) == ["job-2", "job-5"]
    assert sorted(ran) == ["job-2 s1", "job-2 s2", "job-5 s0", "job-5 s1"]  # s0 replayed
    for run_id, result in (("job-2", 6), ("job-5", 5)):
        run = await wf.get_run(run_id)
        assert run is not None
        assert (run.status, run.result, run.owner) == ("completed", result, None)
        assert run.recoveries == 1
    assert await wf.recover() == []  # nothing left to do


async def test_expired_leases_and_released_runs_are_orphans_live_leases_are_not(
    make_wf,
) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    job = jobs(wf, ran)
    store = await ready(wf)
    await orphan(wf, "job-1", job.workflow_id, {"n": 1}, "elsewhere:1:old", lease=-1)
    await orphan(wf, "job-3", job.workflow_id, {"n": 3}, "elsewhere:1:alive", lease=30)
    await orphan(wf, "job-4", job.workflow_id, {"n": 4}, "elsewhere:1:gone", lease=30)
    await store.release_run("job-4", "elsewhere:1:gone")  # owner None: interrupted

    assert sorted(await wf.recover()) == ["job-1", "job-4"]
    alive = await wf.get_run("job-3")
    assert alive is not None
    assert (alive.status, alive.owner) == ("running", "elsewhere:1:alive")
    assert not [r for r in ran if r.startswith("job-3")]


async def test_runs_of_workflows_not_defined_here_are_left_alone(make_wf, dead_owner) -> None:
    wf: Workflow = make_wf()
    jobs(wf, [])
    await orphan(wf, "other-1", "someone.else", {"n": 1}, dead_owner())
    assert await wf.recover() == []
    run = await wf.get_run("other-1")
    assert run is not None
    assert run.status == "running"


async def test_a_run_executing_in_this_process_is_not_recovered_by_another(make_wf) -> None:
    busy: Workflow = make_wf()
    other: Workflow = make_wf()
    ran: list[str] = []
    release = asyncio.Event()

    for wf in (busy, other):

        @wf.task
        async def step() -> str:
            ran.append("step")
            await release.wait()
            return "ok"

        @wf.workflow(id="busy")
        async def flow() -> str:
            return await step()

        if wf is busy:
            running = asyncio.create_task(flow())

    await asyncio.sleep(0.1)
    assert await other.recover() == []
    release.set()
    assert await running == "ok"
    assert ran == ["step"]


async def test_a_recovered_run_that_fails_is_recorded_not_raised(make_wf, dead_owner) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="bad-{n}")
    async def bad(n: int) -> None:
        raise Boom(f"bad {n}")

    await orphan(wf, "bad-1", bad.workflow_id, {"n": 1}, dead_owner())
    assert await wf.recover() == ["bad-1"]
    run = await wf.get_run("bad-1")
    assert run is not None
    assert run.status == "failed"
    assert "bad 1" in (run.error or "")


async def test_an_orphan_without_stored_inputs_does_not_stop_the_others(
    make_wf, dead_owner
) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    job = jobs(wf, ran)
    await orphan(wf, "job-1", job.workflow_id, {"n": 1}, dead_owner("a"))
    # Its arguments could not be stored as JSON (inputs None): it cannot be recovered.
    await orphan(wf, "job-2", job.workflow_id, None, dead_owner("b"))
    recovered = await wf.recover()
    assert "job-1" in recovered
    run = await wf.get_run("job-1")
    assert run is not None
    assert run.status == "completed"


async def test_the_worker_recovers_past_an_orphan_without_stored_inputs(
    make_wf, dead_owner, wait_until
) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    job = jobs(wf, ran)
    await orphan(wf, "job-1", job.workflow_id, {"n": 1}, dead_owner("a"))
    await orphan(wf, "job-2", job.workflow_id, None, dead_owner("b"))  # newest: first listed

    async def completed() -> bool:
        run = await wf.get_run("job-1")
        return run is not None and run.status == "completed"

    async with wf.worker(poll=0.1):
        await wait_until(completed, timeout=2.0)


async def test_the_worker_recovers_at_start_and_picks_up_orphans_that_appear(
    make_wf, dead_owner, wait_until
) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    job = jobs(wf, ran)
    await orphan(wf, "job-1", job.workflow_id, {"n": 1}, dead_owner("a"))

    async def status(run_id: str) -> str | None:
        run = await wf.get_run(run_id)
        return None if run is None else run.status

    async with wf.worker(poll=0.2):
        await wait_until(lambda: _is(status("job-1"), "completed"), timeout=2.0)
        await asyncio.sleep(0.3)
        await orphan(wf, "job-7", job.workflow_id, {"n": 7, "steps": 2}, dead_owner("b"))
        appeared = time.monotonic()
        await wait_until(lambda: _is(status("job-7"), "completed"), timeout=2.0)
        assert time.monotonic() - appeared < 0.2 + 0.5  # within a poll period
    run = await wf.get_run("job-7")
    assert run is not None
    assert run.result == 7
    assert sorted(ran) == ["job-1 s0", "job-1 s1", "job-1 s2", "job-7 s0", "job-7 s1"]


async def _is(status: Any, expected: str) -> bool:
    return (await status) == expected


def define_wait(wf: Workflow) -> None:
    @wf.workflow(id="wait-{n}")
    async def wait(n: int) -> Any:
        return await wf.signal("go", poll=0.05)


async def test_leaving_the_worker_releases_the_runs_it_executes(make_wf, dead_owner) -> None:
    worker_wf: Workflow = make_wf(lease_seconds=30)
    successor: Workflow = make_wf(lease_seconds=30)
    for wf in (worker_wf, successor):
        define_wait(wf)

    await orphan(worker_wf, "wait-1", "app.wait", {"n": 1}, dead_owner())
    async with worker_wf.worker(poll=0.1):
        await asyncio.sleep(0.3)
        run = await worker_wf.get_run("wait-1")
        assert run is not None
        assert run.owner is not None
        assert f":{os.getpid()}:" in run.owner  # taken over by this process's worker
    run = await worker_wf.get_run("wait-1")
    assert run is not None
    assert (run.status, run.owner) == ("running", None)  # released, not finished

    await successor.complete("wait-1", "go", "went")
    began = time.monotonic()
    assert await successor.recover() == ["wait-1"]  # at once, not after a 30 s lease
    assert time.monotonic() - began < 1.0
    run = await successor.get_run("wait-1")
    assert run is not None
    assert (run.status, run.result) == ("completed", "went")


async def test_more_takeovers_than_max_recoveries_dead_letter_the_run(make_wf, dead_owner) -> None:
    wf: Workflow = make_wf(max_recoveries=2)
    ran: list[str] = []
    job = jobs(wf, ran)
    store = await ready(wf)
    # Three owners in turn, each dying mid-run: two takeovers so far.
    owners = [dead_owner(f"p{i}") for i in range(3)]
    await orphan(wf, "job-3", job.workflow_id, {"n": 3}, owners[0])
    for before, after in itertools.pairwise(owners):
        claim = await store.claim_run(
            "job-3", job.workflow_id, {"n": 3}, owner=after, lease_seconds=30,
            takeover_from=before,
        )  # fmt: skip
        assert claim.acquired
    record = await wf.get_run("job-3")
    assert record is not None
    assert record.recoveries == 2

    assert await wf.recover() == []  # the third takeover is one too many: dead, not resumed
    run = await wf.get_run("job-3")
    assert run is not None
    assert run.status == "dead"
    assert "dead-lettered" in (run.error or "")
    assert run.owner is None
    assert ran == []
    with pytest.raises(RunFailedError, match="dead-lettered"):
        await job(3)
    assert await wf.recover() == []  # a dead run is not an orphan

    assert await wf.resume("job-3") == 9
    run = await wf.get_run("job-3")
    assert run is not None
    assert (run.status, run.recoveries) == ("completed", 0)


async def test_max_recoveries_takeovers_are_still_allowed(make_wf, dead_owner) -> None:
    wf: Workflow = make_wf(max_recoveries=1)
    job = jobs(wf, [])
    await orphan(wf, "job-2", job.workflow_id, {"n": 2}, dead_owner())
    assert await wf.recover() == ["job-2"]
    run = await wf.get_run("job-2")
    assert run is not None
    assert (run.status, run.recoveries) == ("completed", 1)


# -- real processes ------------------------------------------------------------------------


def _ends(lines: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(run, step) for run, step, what in lines if what == "end"]


@pytest.mark.slow
def test_a_killed_process_is_recovered_by_another_without_its_arguments(
    spawn, db_file, ledger, ledger_lines, worker
) -> None:
    # One process runs three jobs and is SIGKILLed mid-run; another process executes
    # a long run and stays alive. The test process recovers: only the orphans.
    alive = spawn("steps", db_file, ledger, "alive", 30, 0.2)
    crashed = spawn("start", db_file, ledger, 3, 6, 0.15)
    crashed.wait_for("started")
    deadline = time.monotonic() + 20
    while len([e for e in _ends(ledger_lines()) if e[0].startswith("job-")]) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    crashed.kill()
    with sqlite3.connect(db_file) as conn:
        done_before = set(
            conn.execute("SELECT run_id, step_id FROM steps WHERE run_id LIKE 'job-%'")
        )
    assert len(done_before) >= 3

    async def recover() -> tuple[list[str], dict[str, Any]]:
        flows = worker.build(str(db_file), str(ledger), steps=6, step_seconds=0.01)
        async with flows.wf:
            ids = await flows.wf.recover()
            runs = {r.run_id: r for r in await flows.wf.list_runs()}
            return ids, runs

    ids, runs = asyncio.run(recover())
    assert sorted(ids) == ["job-0", "job-1", "job-2"]
    for n in range(3):
        assert runs[f"job-{n}"].status == "completed"
        assert runs[f"job-{n}"].result == sum(n * i for i in range(6))
    assert runs["looper-alive"].status == "running"
    assert runs["looper-alive"].owner is not None
    assert str(alive.popen.pid) in runs["looper-alive"].owner

    starts = collections.Counter(
        (run, step) for run, step, what in ledger_lines() if what == "start"
    )
    for key in done_before:
        assert starts[key] == 1, f"{key} was checkpointed before the kill, yet ran again"
    jobs_started = {k: v for k, v in starts.items() if k[0].startswith("job-")}
    assert set(jobs_started) == {(f"job-{n}", f"step-{i}") for n in range(3) for i in range(6)}
    assert all(count <= 2 for count in jobs_started.values())
    assert sum(jobs_started.values()) - 18 <= 3  # at most the steps in flight at the kill
    assert all(count == 1 for k, count in starts.items() if k[0] == "looper-alive")
    alive.kill()


@pytest.mark.slow
def test_a_run_whose_processes_keep_dying_is_dead_lettered_then_revived(
    spawn, db_file, ledger, ledger_lines, worker
) -> None:
    def starts() -> collections.Counter[tuple[str, str]]:
        return collections.Counter((r, s) for r, s, w in ledger_lines() if w == "start")

    def kill_when_started(proc: Any, step: str, times: int = 1) -> None:
        # Once step N has started, step N-1 is checkpointed: the kill interrupts step N.
        deadline = time.monotonic() + 20
        while starts()[("job-0", step)] < times:
            assert time.monotonic() < deadline
            assert proc.popen.poll() is None
            time.sleep(0.01)
        proc.kill()

    first = spawn("start", db_file, ledger, 1, 20, 0.3, max_recoveries=1)
    kill_when_started(first, "step-1")
    second = spawn("recover", db_file, ledger, 20, 0.3, max_recoveries=1)
    # Killed in step-1 again, before any new checkpoint: a take-over without progress.
    kill_when_started(second, "step-1", times=2)
    third = spawn("recover", db_file, ledger, 20, 0.3, max_recoveries=1)
    code, events, err = third.finish()
    assert code == 0, err
    recovered = next(e for e in events if e["event"] == "recovered")
    # The second take-over in a row is one too many: dead-lettered (checked below), and
    # so not among the resumed.
    assert recovered["ids"] == []
    assert sum(starts().values()) == 3  # the dead-lettered attempt ran no step

    async def revive() -> tuple[Any, Any]:
        flows = worker.build(str(db_file), str(ledger), steps=20, step_seconds=0.01)
        async with flows.wf:
            dead = await flows.wf.get_run("job-0")
            return dead, await flows.wf.resume("job-0")

    dead, result = asyncio.run(revive())
    assert dead.status == "dead"
    assert "dead-lettered" in dead.error
    assert (dead.recoveries, dead.recoveries_without_progress) == (2, 2)
    assert result == 0
    counts = starts()
    # step-0 once; step-1 was interrupted twice; the rest ran once.
    assert counts[("job-0", "step-0")] == 1
    assert counts[("job-0", "step-1")] == 3
    assert all(counts[("job-0", f"step-{i}")] == 1 for i in range(2, 20))


async def test_a_run_waiting_through_many_restarts_is_not_dead_lettered(
    make_wf, dead_owner
) -> None:
    # Each restart (a deploy) takes the waiting run over from a process that is gone;
    # reaching its wait again is progress, so more restarts than max_recoveries are fine.
    wf: Workflow = make_wf(max_recoveries=2)
    ran: list[str] = []

    @wf.task
    async def prepare(n: int) -> int:
        ran.append("prepare")
        return n

    @wf.workflow(id="approve-{n}")
    async def approve(n: int) -> Any:
        await prepare(n)
        return await wf.signal("approval", poll=0.02)

    store = await ready(wf)
    previous = None
    for restart in range(6):
        waiting = asyncio.create_task(approve(1))
        for _ in range(200):  # until this process holds it, waiting, progress noted
            record = await wf.get_run("approve-1")
            steps = await store.load_steps("approve-1") or {}
            if (
                record is not None
                and record.owner not in (None, previous)
                and record.recoveries_without_progress == 0
                and "prepare" in steps
            ):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"the run never waited here: {record}")
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        # The process "died" waiting: its record says running, under an owner now gone.
        owner = dead_owner(f"p{restart}")
        claim = await store.claim_run(
            "approve-1", approve.workflow_id, {"n": 1}, owner=owner, lease_seconds=30,
            takeover_from=previous,
        )  # fmt: skip
        assert claim.acquired
        previous = owner
    record = await wf.get_run("approve-1")
    assert record is not None
    assert record.status == "running"
    assert record.recoveries == 5  # each restart after the first took it over from the dead

    resumed = asyncio.create_task(wf.recover())
    await asyncio.sleep(0.1)
    assert await wf.complete("approve-1", "approval", "yes") is True
    assert await resumed == ["approve-1"]
    record = await wf.get_run("approve-1")
    assert record is not None
    assert (record.status, record.result) == ("completed", "yes")
    assert ran == ["prepare"]
