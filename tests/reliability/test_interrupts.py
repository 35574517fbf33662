"""Cancellation and interrupts: a run stopped by ``CancelledError`` (while a step runs,
while its checkpoint commits on SQLite's patient path, by ``asyncio.wait_for``), or by
``KeyboardInterrupt`` / ``SystemExit`` from a step, claims no checkpoint it did not
write, is never retried, and resumes correctly afterwards.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from durable import Store, Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore

from .conftest import StoreSource

#: The durable sleep that ``asyncio.wait_for`` interrupts after 0.2 s.
SLEEP = 1.0


def build(
    db: Store, bodies: Counter[str], *, slow: bool, running: asyncio.Event | None = None
) -> Any:
    wf = Workflow("intr", db=db, default_backoff=constant(0))

    @wf.task
    async def first() -> int:
        bodies["first"] += 1
        return 1

    @wf.task
    async def long_step() -> int:
        bodies["long"] += 1
        if running is not None:
            running.set()
        if slow:
            await asyncio.sleep(30)
        return 2

    @wf.workflow(id="timed-{where}")
    async def flow(where: str) -> int:
        a = await first()
        if where == "step":
            b = await long_step()
        elif where == "sleep":
            await wf.sleep(SLEEP)
            b = 2
        else:
            b = await wf.signal("go", poll=0.05)
        return a + b

    return wf, flow


@pytest.mark.parametrize(
    ("how", "where"),
    [("cancel", "step"), ("wait_for", "step"), ("wait_for", "sleep"), ("wait_for", "signal")],
)
async def test_an_interrupted_run_claims_nothing_unfinished_and_resumes(
    source: StoreSource, how: str, where: str
) -> None:
    bodies: Counter[str] = Counter()
    running = asyncio.Event()
    wf, flow = build(source(), bodies, slow=True, running=running)
    run_id = f"timed-{where}"
    started = time.monotonic()
    if how == "cancel":
        task = asyncio.ensure_future(flow(where))
        await running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flow(where), 0.2)
    stopped = time.monotonic() - started
    assert stopped < 0.6, f"the interruption took {stopped:.2f} s"

    record = await wf.get_run(run_id)
    assert record is not None
    assert (record.status, record.owner) == ("running", None)  # interrupted, lease released
    expected_steps = {"first"} | ({"$sleep"} if where == "sleep" else set())
    assert {s.step_id for s in record.steps} == expected_steps  # nothing claimed for the rest
    await wf.close()

    # Another Workflow object (another process) resumes it at once.
    again, flow2 = build(source(), bodies, slow=False)
    if where == "signal":
        assert await again.complete(run_id, "go", 2) is True
    resumed = time.monotonic()
    assert await flow2(where) == 3
    took = time.monotonic() - resumed
    assert bodies["first"] == 1  # replayed
    assert bodies["long"] == (2 if where == "step" else 0)  # the cut-short step ran again
    if where == "sleep":  # it slept only what was left of its SLEEP seconds
        assert time.monotonic() - started >= SLEEP - 0.02
        assert took < SLEEP - 0.1
    else:
        assert took < 0.5, f"the resumed run waited {took:.2f} s"
    await again.close()


# -- cancelled while its checkpoint commits (SQLite's patient path) -----------------------


class SignallingStore(SQLiteStore):
    """Sets ``entered`` when a checkpoint write starts."""

    entered: asyncio.Event

    async def checkpoint_step(
        self, run_id: str, step_id: str, result: Any, attempt: int = 1
    ) -> bool:
        self.entered.set()
        return await super().checkpoint_step(run_id, step_id, result, attempt)


def checkpointing_flow(
    store: SQLiteStore,
    bodies: Counter[str],
    gate: asyncio.Event | None = None,
    running: asyncio.Event | None = None,
) -> tuple[Workflow, Any]:
    wf = Workflow("patient", db=store, default_backoff=constant(0))

    @wf.task
    async def work(n: int) -> dict[str, int]:
        bodies[f"c-{n}"] += 1
        if running is not None:
            running.set()
        if gate is not None:
            await gate.wait()
        return {"n": n, "square": n * n}

    @wf.workflow(id="c-{n}")
    async def flow(n: int) -> int:
        return (await work(n))["square"] + 1

    return wf, flow


@pytest.mark.slow
async def test_a_cancel_during_a_patient_checkpoint_leaves_it_whole_or_absent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "patient.db"
    store = SignallingStore(path, durability="full")  # every commit goes to the thread
    store.entered = asyncio.Event()
    bodies: Counter[str] = Counter()
    wf, flow = checkpointing_flow(store, bodies)
    rng = random.Random(1)
    outcomes: Counter[str] = Counter()
    await wf.store.setup()
    for n in range(40):
        store.entered.clear()
        task = asyncio.ensure_future(flow(n))
        await store.entered.wait()
        # At once (inside the shielded write), or a moment later (fsync, then the outcome).
        if n % 2:
            await asyncio.sleep(rng.uniform(0, 0.004))
        task.cancel()
        try:
            assert await task == n * n + 1
            outcomes["finished before the cancel"] += 1
        except asyncio.CancelledError:
            record = await store.get_run(f"c-{n}")
            assert record is not None
            assert record.owner is None, "a cancelled run kept its lease"
            steps = await store.load_steps(f"c-{n}")
            if "work" in steps:
                assert steps["work"] == {"n": n, "square": n * n}  # whole, never partial
            outcomes[f"cancelled, checkpoint {'written' if 'work' in steps else 'absent'}"] += 1
            outcomes[f"run {record.status}"] += 1
    # Every run resumes in a new "process" and ends with the right result; a step whose
    # checkpoint was written did not run again.
    other_bodies: Counter[str] = Counter()
    again, flow2 = checkpointing_flow(SQLiteStore(path), other_bodies)
    for n in range(40):
        written = "work" in await store.load_steps(f"c-{n}")
        assert await flow2(n) == n * n + 1
        assert other_bodies[f"c-{n}"] == (0 if written else 1)
    print(f"40 cancels during a durability=full checkpoint: {dict(outcomes)}")
    assert outcomes["cancelled, checkpoint written"] > 0
    await wf.close()
    await again.close()


@pytest.mark.slow
async def test_a_cancel_while_the_checkpoint_waits_for_a_lock_completes_when_it_frees(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    store = SignallingStore(path)
    store.entered = asyncio.Event()
    bodies: Counter[str] = Counter()
    gate, running = asyncio.Event(), asyncio.Event()
    wf, flow = checkpointing_flow(store, bodies, gate, running)
    await store.setup()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        task = asyncio.ensure_future(flow(7))
        await running.wait()
        holder.execute("BEGIN IMMEDIATE")  # another writer takes the file...
        gate.set()  # ...as the step returns: its checkpoint must wait for the lock
        await store.entered.wait()
        await asyncio.sleep(0.1)
        cancelled = time.monotonic()
        task.cancel()
        asyncio.get_running_loop().call_later(0.5, holder.execute, "COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await task
        waited = time.monotonic() - cancelled
    finally:
        holder.close()
    print(f"a cancel while the checkpoint waited for another writer's lock took {waited:.2f} s")
    # The cancelled caller waits for the write it started (shielded) and for the release
    # of its lease; it gets CancelledError once the other writer lets go, not before.
    assert 0.4 < waited < 2.0
    assert await store.load_steps("c-7") == {"work": {"n": 7, "square": 49}}
    record = await store.get_run("c-7")
    assert record is not None
    assert (record.status, record.owner) == ("running", None)
    assert await flow(7) == 50
    assert bodies["c-7"] == 1  # the written checkpoint replayed
    await wf.close()


class SignallingClaims(SQLiteStore):
    """Sets ``entered`` when a claim write starts."""

    entered: asyncio.Event

    async def claim_run(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        return await super().claim_run(*args, **kwargs)


async def test_a_cancel_during_the_claim_leaves_no_lease_behind(tmp_path: Path) -> None:
    path = tmp_path / "claim.db"
    store = SignallingClaims(path, durability="full")
    store.entered = asyncio.Event()
    bodies: Counter[str] = Counter()
    wf, flow = checkpointing_flow(store, bodies)
    await store.setup()
    task = asyncio.ensure_future(flow(3))
    await store.entered.wait()
    task.cancel()  # the claim write goes on in the store's thread (shielded)
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    record = await store.get_run("c-3")
    await wf.close()
    assert record is None or record.owner is None, (
        f"the cancelled run still holds a lease for {record.lease_expires_at - time.time():.0f} s"
    )
    # Another process can run it at once.
    again, flow2 = checkpointing_flow(SQLiteStore(path), bodies)
    async with again:
        assert await asyncio.wait_for(flow2(3), 2) == 10


# -- KeyboardInterrupt and SystemExit -------------------------------------------------------


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_from_a_step_are_never_retried(
    source: StoreSource, interrupt: type[BaseException]
) -> None:
    bodies: Counter[str] = Counter()

    def make(lease: float) -> tuple[Workflow, Any]:
        wf = Workflow("kbd", db=source(), default_backoff=constant(0), lease_seconds=lease)

        @wf.task
        async def before() -> str:
            bodies["before"] += 1
            return "b"

        # Even a task that asks for every BaseException to be retried.
        @wf.task(retries=3, retry_on=(BaseException,))
        async def step() -> str:
            bodies["step"] += 1
            if bodies["step"] == 1:
                raise interrupt()
            return "s"

        @wf.workflow(id="interrupted")
        async def flow() -> str:
            return await before() + await step()

        return wf, flow

    wf, flow = make(lease=0.3)
    with pytest.raises(interrupt):
        asyncio.run(flow())
    assert bodies == {"before": 1, "step": 1}  # not retried

    async def inspect_and_resume() -> tuple[Any, str, Any]:
        record = await wf.get_run("interrupted")
        await wf.close()
        again, flow2 = make(lease=30)
        async with again:
            return record, await flow2(), await again.get_run("interrupted")

    record, result, after = asyncio.run(inspect_and_resume())
    # Not a failure of the run: interrupted, like a crash, with "before" checkpointed.
    assert record.status == "running"
    assert [s.step_id for s in record.steps] == ["before"]
    assert result == "bs"
    assert bodies == {"before": 1, "step": 2}
    assert (after.status, after.result) == ("completed", "bs")
