"""One run id started twice at once: in one process, and from two owners on one store."""

import asyncio
import gc
import subprocess
import sys
from collections import Counter

import pytest

from durable import LeaseLostError, RunFailedError, Workflow
from durable.owners import local_owner_id


class Crash(Exception):
    pass


async def test_same_run_started_twice_in_one_process_executes_once(make_wf) -> None:
    wf = make_wf()
    counts: Counter[str] = Counter()

    @wf.task
    async def step(x: int) -> int:
        counts["step"] += 1
        await asyncio.sleep(0.02)
        return x * 2

    @wf.workflow(id="r")
    async def flow(x: int) -> dict[str, int]:
        counts["body"] += 1
        return {"value": await step(x)}

    first, second = await asyncio.gather(flow(21), flow(21))
    assert first == second == {"value": 42}
    assert counts == {"body": 1, "step": 1}


async def test_many_concurrent_callers_share_one_execution(wf: Workflow) -> None:
    body = 0

    @wf.workflow(id="r")
    async def flow() -> str:
        nonlocal body
        body += 1
        await asyncio.sleep(0.01)
        return "once"

    results = await asyncio.gather(*(flow() for _ in range(10)))
    assert results == ["once"] * 10
    assert body == 1


async def test_when_the_first_caller_fails_both_raise(make_wf) -> None:
    wf = make_wf()
    body = 0

    @wf.task(retries=0)
    async def step() -> None:
        await asyncio.sleep(0.02)
        raise Crash("step failed")

    @wf.workflow(id="r")
    async def flow() -> None:
        nonlocal body
        body += 1
        await step()

    results = await asyncio.gather(flow(), flow(), return_exceptions=True)
    assert [type(r) for r in results] == [Crash, Crash]
    assert body == 1
    record = await wf.get_run("r")
    assert record is not None
    assert record.status == "failed"


async def test_a_failed_run_nobody_else_waited_on_logs_no_unretrieved_error(
    wf: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's shared outcome holds its error; with no second caller, nobody reads it."""

    @wf.workflow(id="alone-{n}")
    async def flow(n: int) -> None:
        raise Crash(f"run {n} failed")

    for n in range(3):
        with pytest.raises(Crash):
            await flow(n)
    gc.collect()  # an unread exception of a future is logged when it is collected
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_cancelling_the_first_caller_lets_the_waiting_caller_finish(
    make_wf, wait_until
) -> None:
    wf = make_wf()
    counts: Counter[str] = Counter()
    gate = asyncio.Event()

    @wf.task
    async def prepare() -> str:
        counts["prepare"] += 1
        return "prepared"

    @wf.task
    async def slow(prev: str) -> str:
        counts["slow"] += 1
        await gate.wait()
        return prev + "+slow"

    @wf.workflow(id="r")
    async def flow() -> str:
        return await slow(await prepare())

    first = asyncio.create_task(flow())
    await wait_until(lambda: counts["slow"] == 1)
    second = asyncio.create_task(flow())
    await asyncio.sleep(0.02)
    assert not second.done()

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await wait_until(lambda: counts["slow"] == 2)  # the second caller took over
    gate.set()
    assert await asyncio.wait_for(second, 5) == "prepared+slow"
    assert counts == {"prepare": 1, "slow": 2}
    record = await wf.get_run("r")
    assert record is not None
    assert record.status == "completed"


async def test_cancelling_a_waiting_caller_does_not_disturb_the_run(wf: Workflow) -> None:
    gate = asyncio.Event()
    body = 0

    @wf.workflow(id="r")
    async def flow() -> str:
        nonlocal body
        body += 1
        await gate.wait()
        return "ok"

    first = asyncio.create_task(flow())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(flow())
    await asyncio.sleep(0.01)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    gate.set()
    assert await asyncio.wait_for(first, 5) == "ok"
    assert body == 1


async def test_a_cancelled_run_resumes_on_the_next_call(make_wf, wait_until) -> None:
    wf = make_wf()
    counts: Counter[str] = Counter()
    gate = asyncio.Event()

    @wf.task
    async def prepare() -> int:
        counts["prepare"] += 1
        return 1

    @wf.task
    async def slow(x: int) -> int:
        counts["slow"] += 1
        await gate.wait()
        return x + 1

    @wf.workflow(id="r")
    async def flow() -> int:
        return await slow(await prepare())

    running = asyncio.create_task(flow())
    await wait_until(lambda: counts["slow"] == 1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    gate.set()
    assert await asyncio.wait_for(flow(), 5) == 2
    assert counts == {"prepare": 1, "slow": 2}


async def test_two_owners_on_one_store_wait_for_the_lease(make_wf, wait_until) -> None:
    """Two Workflow objects (two processes) on one store: the second waits, then replays."""
    counts: Counter[str] = Counter()
    gate = asyncio.Event()

    def define(wf: Workflow):
        @wf.task
        async def first_step() -> int:
            counts["first_step"] += 1
            return 1

        @wf.task
        async def second_step(x: int) -> int:
            counts["second_step"] += 1
            await gate.wait()
            return x + 1

        @wf.workflow(id="r")
        async def flow() -> dict[str, int]:
            counts["body"] += 1
            return {"total": await second_step(await first_step())}

        return flow

    wf_a, wf_b = make_wf(), make_wf()
    for owner in (wf_a, wf_b):  # open both stores before the run starts
        await owner.get_run("r")
    owner_a, owner_b = define(wf_a), define(wf_b)
    a = asyncio.create_task(owner_a())
    await wait_until(lambda: counts["second_step"] == 1)
    b = asyncio.create_task(owner_b())
    await asyncio.sleep(0.3)  # longer than the wait poll: b must still be waiting
    assert not b.done()
    assert counts == {"body": 1, "first_step": 1, "second_step": 1}

    gate.set()
    result_a = await asyncio.wait_for(a, 5)
    result_b = await asyncio.wait_for(b, 5)
    assert result_a == result_b == {"total": 2}
    assert counts == {"body": 1, "first_step": 1, "second_step": 1}


async def test_a_caller_waiting_on_another_owner_gets_its_failure(make_wf, wait_until) -> None:
    """Both callers get the one outcome: the waiter does not re-run a failed run."""
    started = asyncio.Event()
    release = asyncio.Event()
    bodies = Counter[str]()

    def define(wf: Workflow):
        @wf.workflow(id="r")
        async def flow() -> int:
            bodies["flow"] += 1
            started.set()
            await release.wait()
            raise Crash("card declined")

        return flow

    wf_a, wf_b = make_wf(), make_wf()
    for owner in (wf_a, wf_b):
        await owner.get_run("r")
    a = asyncio.create_task(define(wf_a)())
    await started.wait()
    b = asyncio.create_task(define(wf_b)())
    await asyncio.sleep(0.3)
    release.set()
    with pytest.raises(Crash):
        await asyncio.wait_for(a, 5)
    with pytest.raises(RunFailedError, match="card declined"):
        await asyncio.wait_for(b, 5)
    assert bodies == {"flow": 1}


async def test_two_owners_started_together_execute_each_step_once(make_wf) -> None:
    counts: Counter[str] = Counter()

    def define(wf: Workflow):
        @wf.task
        async def step(i: int) -> int:
            counts[f"step{i}"] += 1
            await asyncio.sleep(0.01)
            return i

        @wf.workflow(id="r")
        async def flow() -> int:
            return sum([await step(i) for i in range(3)])

        return flow

    owners = [make_wf(), make_wf()]
    for owner in owners:  # open both stores first: this test is about claiming the run
        await owner.get_run("r")
    results = await asyncio.gather(*(define(owner)() for owner in owners))
    assert results == [3, 3]
    assert counts == {"step0": 1, "step1": 1, "step2": 1}


async def test_different_run_ids_run_concurrently(wf: Workflow) -> None:
    both_started = asyncio.Barrier(2)

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        await asyncio.wait_for(both_started.wait(), 2)  # deadlocks if serialized
        return n

    assert await asyncio.gather(job(1), job(2)) == [1, 2]


# -- leases --------------------------------------------------------------------------------


async def test_the_lease_is_renewed_while_a_long_step_runs(make_wf, wait_until) -> None:
    """A step that outlasts the lease keeps its run: the heartbeat renews the lease."""
    counts: Counter[str] = Counter()

    def define(wf: Workflow):
        @wf.task
        async def long_step() -> str:
            counts["long_step"] += 1
            await asyncio.sleep(1.5)
            return "done"

        @wf.workflow(id="r")
        async def flow() -> str:
            return await long_step()

        return flow

    wf_a, wf_b = make_wf(lease_seconds=0.6), make_wf(lease_seconds=0.6)
    for owner in (wf_a, wf_b):  # open both stores before the run starts
        await owner.get_run("r")
    a = asyncio.create_task(define(wf_a)())
    await wait_until(lambda: counts["long_step"] == 1)
    b = asyncio.create_task(define(wf_b)())
    assert await asyncio.wait_for(a, 5) == "done"
    assert await asyncio.wait_for(b, 5) == "done"
    assert counts == {"long_step": 1}


async def _foreign_claim(db, owner: str, lease_seconds: float) -> None:
    """Make ``owner`` (another process) hold run "r", as a store would record it."""
    store = db()
    await store.setup()
    try:
        claim = await store.claim_run("r", "app.flow", {}, owner=owner, lease_seconds=lease_seconds)
        assert claim.acquired
    finally:
        await store.close()  # a no-op for the shared in-memory store


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_a_run_held_by_a_dead_local_process_is_taken_over_at_once(db, make_wf) -> None:
    await _foreign_claim(db, local_owner_id(_dead_pid(), "abc123"), 60)
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> str:
        return "taken over"

    assert await asyncio.wait_for(flow(), 3) == "taken over"


async def test_a_run_whose_lease_expired_is_taken_over(db, make_wf) -> None:
    await _foreign_claim(db, "some-other-host:1234:abc123", 0.5)
    wf = make_wf()
    body = 0

    @wf.workflow(id="r")
    async def flow() -> str:
        nonlocal body
        body += 1
        return "mine now"

    waiting = asyncio.create_task(flow())
    await asyncio.sleep(0.2)
    assert body == 0  # the lease is still live
    assert await asyncio.wait_for(waiting, 3) == "mine now"


async def test_an_owner_that_lost_its_lease_starts_no_further_step(db, make_wf) -> None:
    wf = make_wf(lease_seconds=0.3)
    counts: Counter[str] = Counter()
    proceed = asyncio.Event()

    @wf.task
    async def first() -> int:
        counts["first"] += 1
        return 1

    @wf.task
    async def second() -> int:
        counts["second"] += 1
        return 2

    @wf.workflow(id="r")
    async def flow() -> int:
        await first()
        await proceed.wait()
        return await second()

    other = db()  # another process, its store opened before the run starts
    await other.setup()
    try:
        running = asyncio.create_task(flow())
        await asyncio.sleep(0.05)
        record = await wf.get_run("r")
        assert record is not None
        assert record.owner is not None
        # The other process decides this owner is gone and takes the run over.
        claim = await other.claim_run(
            "r", "app.flow", {}, owner="thief:1:x", lease_seconds=60, takeover_from=record.owner
        )
        assert claim.acquired
        await asyncio.sleep(0.6)  # a heartbeat of the first owner (every 0.1 s) notices
        proceed.set()
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(running, 3)
        assert counts == {"first": 1}
        after = await wf.get_run("r")
        assert after is not None
        assert (after.status, after.owner) == ("running", "thief:1:x")
    finally:
        await other.close()  # a no-op for the shared in-memory store
