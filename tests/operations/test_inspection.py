"""``wf.list_runs``, ``wf.get_run`` (steps and signals) and ``wf.delete_runs``."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from durable import Workflow
from durable.records import SignalRecord, StepRecord


class Boom(Exception):
    pass


def define(wf: Workflow) -> tuple[Any, Any]:
    @wf.workflow(id="ok-{n}")
    async def ok(n: int) -> int:
        return n

    @wf.workflow(id="bad-{n}")
    async def bad(n: int) -> int:
        raise Boom(f"bad {n}")

    return ok, bad


async def make_runs(wf: Workflow) -> tuple[Any, Any]:
    ok, bad = define(wf)
    for n in range(3):
        await ok(n)
        await asyncio.sleep(0.01)  # distinct creation times
    for n in range(2):
        with pytest.raises(Boom):
            await bad(n)
        await asyncio.sleep(0.01)
    return ok, bad


async def test_list_runs_newest_first_with_filters_and_limit(make_wf) -> None:
    wf: Workflow = make_wf()
    ok, _bad = await make_runs(wf)

    runs = await wf.list_runs()
    assert [r.run_id for r in runs] == ["bad-1", "bad-0", "ok-2", "ok-1", "ok-0"]
    assert [r.run_id for r in await wf.list_runs(limit=2)] == ["bad-1", "bad-0"]
    failed = await wf.list_runs(status="failed")
    assert [r.run_id for r in failed] == ["bad-1", "bad-0"]
    assert all("Boom" in (r.error or "") for r in failed)
    completed = await wf.list_runs(status="completed")
    assert [(r.run_id, r.result) for r in completed] == [("ok-2", 2), ("ok-1", 1), ("ok-0", 0)]
    # by the workflow function, or by its id "app.name"
    assert [r.run_id for r in await wf.list_runs(workflow=ok)] == ["ok-2", "ok-1", "ok-0"]
    assert [r.run_id for r in await wf.list_runs(workflow="app.bad")] == ["bad-1", "bad-0"]
    assert await wf.list_runs(workflow=ok, status="failed") == []
    assert await wf.list_runs(status="cancelled") == []
    assert await wf.list_runs(workflow="app.nothing") == []
    # listed records leave steps and signals to get_run
    assert all(r.steps == () and r.signals == () for r in runs)


async def test_list_runs_shows_running_runs(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="slow")
    async def slow() -> None:
        await wf.sleep(0.3)

    running = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    (run,) = await wf.list_runs(status="running")
    assert run.run_id == "slow"
    assert run.owner is not None
    await running
    assert await wf.list_runs(status="running") == []


async def test_get_run_has_steps_with_ids_attempts_times_and_values(make_wf) -> None:
    wf: Workflow = make_wf()
    attempts = [0]

    @wf.task(retries=2)
    async def flaky(x: int) -> dict[str, int]:
        attempts[0] += 1
        if attempts[0] < 3:
            raise Boom("not yet")
        return {"x": x}

    @wf.task
    async def label(x: int) -> str:
        return f"#{x}"

    @wf.workflow(id="inspect-{x}")
    async def flow(x: int) -> str:
        await flaky(x)
        await wf.sleep(0.01)
        first = await label(x)
        approval = await wf.signal("approval", poll=0.05)
        second = await label(x + 1)
        return f"{first} {second} {approval}"

    began = dt.datetime.now(dt.UTC)
    running = asyncio.create_task(flow(4))
    await asyncio.sleep(0.2)
    assert await wf.complete("inspect-4", "approval", {"by": "ann"}) is True
    assert await running == "#4 #5 {'by': 'ann'}"
    ended = dt.datetime.now(dt.UTC)

    run = await wf.get_run("inspect-4")
    assert run is not None
    assert (run.run_id, run.workflow, run.status) == ("inspect-4", "app.flow", "completed")
    assert run.inputs == {"x": 4}
    assert run.result == "#4 #5 {'by': 'ann'}"
    assert [s.step_id for s in run.steps] == ["flaky", "$sleep", "label", "label#1"]
    assert all(isinstance(s, StepRecord) for s in run.steps)
    flaky_step, sleep_step, label_step, label_step_1 = run.steps
    assert (flaky_step.value, flaky_step.attempt) == ({"x": 4}, 3)
    assert (label_step.value, label_step.attempt) == ("#4", 1)
    assert label_step_1.value == "#5"
    assert set(sleep_step.value) == {"wake_at"}
    times = [s.created_at for s in run.steps]
    assert all(t is not None and t.tzinfo is not None for t in times)
    assert all(began <= t <= ended for t in times)  # type: ignore[operator]
    assert times == sorted(times)  # type: ignore[type-var]

    (signal,) = run.signals
    assert isinstance(signal, SignalRecord)
    assert (signal.name, signal.payload) == ("approval", {"by": "ann"})
    assert signal.created_at is not None
    assert label_step.created_at <= signal.created_at <= label_step_1.created_at  # type: ignore[operator]
    assert run.created_at is not None
    assert run.updated_at is not None
    assert began <= run.created_at <= run.updated_at <= ended


async def test_get_run_of_an_unknown_run_is_none(make_wf) -> None:
    wf: Workflow = make_wf()
    assert await wf.get_run("nobody") is None


async def test_get_run_shows_signals_delivered_before_the_run_exists(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="later")
    async def later() -> Any:
        return await wf.signal("go", poll=0.05)

    assert await wf.complete("later", "go", None) is True
    assert await later() is None
    run = await wf.get_run("later")
    assert run is not None
    assert [(s.name, s.payload) for s in run.signals] == [("go", None)]


async def test_delete_runs_by_age_deletes_finished_runs_with_steps_and_signals(
    make_wf,
) -> None:
    wf: Workflow = make_wf()
    ran: list[int] = []

    @wf.task
    async def step(n: int) -> int:
        ran.append(n)
        return n

    @wf.workflow(id="old-{n}")
    async def old(n: int) -> int:
        if n == 9:
            raise Boom("failed")
        return await step(n)

    await old(1)
    await wf.complete("old-1", "note", "hi")
    with pytest.raises(Boom):
        await old(9)
    await asyncio.sleep(0.3)
    await old(2)  # newer than the cutoff

    assert await wf.delete_runs(older_than=dt.timedelta(seconds=0.2)) == 2
    assert await wf.get_run("old-1") is None
    assert await wf.get_run("old-9") is None
    assert [r.run_id for r in await wf.list_runs()] == ["old-2"]
    assert await wf.store.get_step("old-1", "step") == (False, None)
    assert await wf.store.get_signal("old-1", "note") == (False, None)
    # Its checkpoints are gone: calling it again is a new run.
    assert await old(1) == 1
    assert ran == [1, 2, 1]


async def test_delete_runs_before_a_datetime(make_wf) -> None:
    wf: Workflow = make_wf()
    ok, _ = define(wf)
    await ok(1)
    await asyncio.sleep(0.05)
    cutoff = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    await ok(2)
    assert await wf.delete_runs(older_than=cutoff) == 1
    assert [r.run_id for r in await wf.list_runs()] == ["ok-2"]
    assert await wf.delete_runs(older_than=cutoff) == 0


async def test_delete_runs_narrowed_by_status(make_wf) -> None:
    wf: Workflow = make_wf()
    await make_runs(wf)
    await asyncio.sleep(0.05)
    assert await wf.delete_runs(older_than=dt.timedelta(0), status="failed") == 2
    assert {r.status for r in await wf.list_runs()} == {"completed"}
    assert await wf.delete_runs(older_than=dt.timedelta(0), status=["cancelled", "dead"]) == 0
    assert len(await wf.list_runs()) == 3


async def test_delete_runs_leaves_running_runs_by_default(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="busy")
    async def busy() -> str:
        await wf.sleep(0.4)
        return "done"

    running = asyncio.create_task(busy())
    await asyncio.sleep(0.2)
    assert await wf.delete_runs(older_than=dt.timedelta(0)) == 0
    assert (await wf.get_run("busy")) is not None
    assert await running == "done"
    run = await wf.get_run("busy")
    assert run is not None
    assert [s.step_id for s in run.steps] == ["$sleep"]
