"""``wf.cancel(run_id)``: a run stops at its next step boundary with status cancelled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from durable import RunCancelledError, Workflow


class Boom(Exception):
    pass


def looping(wf: Workflow, events: list[str], step_seconds: float = 0.2) -> Any:
    @wf.task
    async def work(i: int) -> int:
        events.append(f"start {i}")
        await asyncio.sleep(step_seconds)
        events.append(f"end {i}")
        return i

    @wf.workflow(id="loop-{n}")
    async def loop(n: int) -> int:
        total = 0
        for i in range(n):
            total += await work(i, step_id=f"step-{i}")
        return total

    return loop


async def test_cancel_stops_a_loop_of_steps_at_the_next_step_boundary(make_wf, wait_until) -> None:
    wf: Workflow = make_wf()
    events: list[str] = []
    loop = looping(wf, events)
    running = asyncio.create_task(loop(10))
    await wait_until(lambda: "start 2" in events)
    record = await wf.cancel("loop-10")
    assert record is not None
    assert record.status == "running"
    assert record.cancel_requested

    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(running, 2)
    # The step that was running finished and was checkpointed; no further step started.
    assert events == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    run = await wf.get_run("loop-10")
    assert run is not None
    assert run.status == "cancelled"
    assert not run.cancel_requested
    assert run.owner is None
    assert [s.step_id for s in run.steps] == ["step-0", "step-1", "step-2"]


async def test_a_later_call_of_a_cancelled_run_raises_run_cancelled(make_wf, wait_until) -> None:
    wf: Workflow = make_wf()
    events: list[str] = []
    loop = looping(wf, events, step_seconds=0.05)
    running = asyncio.create_task(loop(5))
    await wait_until(lambda: "start 1" in events)
    await wf.cancel("loop-5")
    with pytest.raises(RunCancelledError):
        await running
    count = len(events)
    with pytest.raises(RunCancelledError, match="loop-5"):
        await loop(5)
    assert len(events) == count  # nothing ran


@pytest.mark.parametrize("wait", ["sleep", "signal", "signal-timeout"])
async def test_cancel_wakes_a_run_waiting_in_sleep_or_signal(make_wf, wait: str) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="waiting")
    async def waiting() -> Any:
        if wait == "sleep":
            await wf.sleep(30)
        elif wait == "signal":
            return await wf.signal("go", poll=30)
        else:
            return await wf.signal("go", poll=30, timeout=30)
        return "slept"

    running = asyncio.create_task(waiting())
    await asyncio.sleep(0.2)
    assert not running.done()
    began = time.monotonic()
    await wf.cancel("waiting")
    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(running, 2)
    assert time.monotonic() - began < 0.5
    run = await wf.get_run("waiting")
    assert run is not None
    assert run.status == "cancelled"


async def test_cancel_of_a_failed_run_cancels_it_at_once(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="fails")
    async def fails() -> None:
        raise Boom("no")

    with pytest.raises(Boom):
        await fails()
    record = await wf.cancel("fails")
    assert record is not None
    assert record.status == "cancelled"
    assert not record.cancel_requested
    stored = await wf.get_run("fails")
    assert stored is not None
    assert stored.status == "cancelled"
    # A cancelled run does not resume by being called: only wf.resume runs it again.
    with pytest.raises(RunCancelledError):
        await fails()


async def test_cancel_of_a_completed_run_changes_nothing(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="done")
    async def done() -> int:
        return 7

    assert await done() == 7
    before = await wf.get_run("done")
    record = await wf.cancel("done")
    assert record is not None
    assert record.status == "completed"
    assert not record.cancel_requested
    after = await wf.get_run("done")
    assert after is not None
    assert after.status == "completed"
    assert after.result == 7
    assert after.updated_at == before.updated_at  # type: ignore[union-attr]
    assert await done() == 7


async def test_cancel_of_an_unknown_run_returns_none(make_wf) -> None:
    wf: Workflow = make_wf()
    assert await wf.cancel("nobody") is None


async def test_cancel_of_an_orphaned_run_cancels_it_at_once(make_wf, dead_owner) -> None:
    # Left "running" by a process that is gone (its lease expired): nobody would ever
    # report the cancellation, so it takes effect at once.
    wf: Workflow = make_wf()

    @wf.workflow(id="orphan")
    async def orphan() -> str:
        return "ran"

    await wf.store.setup()
    await wf.store.claim_run("orphan", orphan.workflow_id, {}, owner=dead_owner(), lease_seconds=-1)
    record = await wf.cancel("orphan")
    assert record is not None
    assert record.status == "cancelled"
    with pytest.raises(RunCancelledError):
        await orphan()
    assert await wf.recover() == []


@pytest.mark.parametrize("wait", ["sleep", "signal"])
async def test_cancel_from_another_workflow_object_is_noticed_by_the_heartbeat(
    make_wf, wait: str
) -> None:
    # Another Workflow (another owner, as another process would be) cancels a run
    # that is waiting here: the lease heartbeat notices within a third of the lease.
    wf: Workflow = make_wf(lease_seconds=0.6)
    other: Workflow = make_wf()

    @wf.workflow(id="long-nap")
    async def long_nap() -> None:
        if wait == "sleep":
            await wf.sleep(30)
        else:
            await wf.signal("never", poll=30, timeout=60)

    running = asyncio.create_task(long_nap())
    await asyncio.sleep(0.1)
    began = time.monotonic()
    record = await other.cancel("long-nap")
    assert record is not None
    assert record.cancel_requested
    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(running, 3)
    assert time.monotonic() - began < 0.2 * 2 + 0.4
    run = await other.get_run("long-nap")
    assert run is not None
    assert run.status == "cancelled"


async def test_cancel_from_another_workflow_object_stops_at_the_next_checkpoint(
    make_wf, wait_until
) -> None:
    wf: Workflow = make_wf()  # a long lease: only the checkpoint can report it
    other: Workflow = make_wf()
    events: list[str] = []
    loop = looping(wf, events, step_seconds=0.2)
    running = asyncio.create_task(loop(10))
    await wait_until(lambda: "start 1" in events)
    await other.cancel("loop-10")
    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(running, 3)
    assert events == ["start 0", "end 0", "start 1", "end 1"]


@pytest.mark.slow
def test_a_run_in_another_process_stops_at_its_next_step_boundary(
    spawn, db_file, ledger_lines, ledger, worker
) -> None:
    # Steps of 1 s: the request (opening the store here, then one write) must land
    # while step-2 runs, also on a loaded machine.
    proc = spawn("steps", db_file, ledger, "x", 20, 1.0)
    deadline = time.monotonic() + 20
    while ("looper-x", "step-2", "start") not in ledger_lines():
        assert time.monotonic() < deadline
        time.sleep(0.01)

    async def cancel() -> Any:
        flows = worker.build(str(db_file), str(ledger))
        async with flows.wf:
            return await flows.wf.cancel("looper-x")

    record = asyncio.run(cancel())
    assert record.cancel_requested
    code, events, err = proc.finish()
    assert code == 5, err
    assert events[-1]["error"] == "RunCancelledError"
    assert [(s, w) for _, s, w in ledger_lines()] == [
        (f"step-{i}", what) for i in range(3) for what in ("start", "end")
    ]

    async def inspect() -> Any:
        flows = worker.build(str(db_file), str(ledger))
        async with flows.wf:
            return await flows.wf.get_run("looper-x")

    run = asyncio.run(inspect())
    assert run.status == "cancelled"
    assert [s.step_id for s in run.steps] == ["step-0", "step-1", "step-2"]


@pytest.mark.slow
def test_a_run_sleeping_in_another_process_is_cancelled_within_a_third_of_its_lease(
    spawn, db_file, ledger, worker
) -> None:
    proc = spawn("sleep", db_file, ledger, "z", 60, lease=0.9)
    proc.wait_for("sleeping")

    async def cancel() -> Any:
        flows = worker.build(str(db_file), str(ledger))
        async with flows.wf:
            return await flows.wf.cancel("sleeper-z")

    began = time.monotonic()
    record = asyncio.run(cancel())
    assert record.cancel_requested
    code, _, err = proc.finish(timeout=10)
    took = time.monotonic() - began
    assert code != 0
    assert "RunCancelledError" in err
    assert took < 0.3 + 1.0  # one heartbeat period (0.3 s), plus exiting the process


async def test_cancel_of_a_run_whose_process_died_cancels_it_at_once(make_wf, dead_owner) -> None:
    # The process executing it was SIGKILLed a moment ago: its lease has not expired,
    # but its owner is a dead process on this host, which the engine otherwise treats
    # as gone at once (a caller takes such a run over without waiting for the lease).
    wf: Workflow = make_wf()

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return n

    await wf.store.setup()
    await wf.store.claim_run(
        "job-1", job.workflow_id, {"n": 1}, owner=dead_owner(), lease_seconds=30
    )
    record = await wf.cancel("job-1")
    assert record is not None
    assert record.status == "cancelled"
    assert await wf.resume("job-1") == 1
