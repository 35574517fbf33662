"""``wf.sleep`` and ``wf.sleep_until``: the wake-up time is checkpointed, so a restart
sleeps only what is left and a replay after the wake-up time does not sleep at all."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from typing import Any

import pytest

from durable import NotInWorkflowError, Workflow


class Boom(Exception):
    pass


async def test_a_run_sleeps_for_the_time_given(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="nap")
    async def nap() -> float:
        began = time.monotonic()
        await wf.sleep(0.3)
        return time.monotonic() - began

    slept = await nap()
    assert 0.29 <= slept < 1.0


async def test_the_wake_up_time_is_a_step_with_sequential_ids(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="naps")
    async def naps() -> None:
        await wf.sleep(0.01)
        await wf.sleep(0.01)
        await wf.sleep_until(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.01))

    before = time.time()
    await naps()
    run = await wf.get_run("naps")
    assert run is not None
    assert [s.step_id for s in run.steps] == ["$sleep", "$sleep#1", "$sleep#2"]
    for step in run.steps:
        assert before < step.value["wake_at"] < time.time()


async def test_a_completed_run_does_not_sleep_again(make_wf) -> None:
    wf: Workflow = make_wf()
    bodies: list[str] = []

    @wf.workflow(id="nap")
    async def nap() -> str:
        bodies.append("ran")
        await wf.sleep(0.3)
        return "rested"

    assert await nap() == "rested"
    began = time.monotonic()
    assert await nap() == "rested"
    assert time.monotonic() - began < 0.1
    assert bodies == ["ran"]


async def test_a_resumed_run_past_its_wake_up_time_does_not_sleep_again(make_wf) -> None:
    wf: Workflow = make_wf()
    fail = [True]

    @wf.task
    async def after_nap() -> str:
        if fail[0]:
            raise Boom("after the nap")
        return "ok"

    @wf.workflow(id="nap")
    async def nap() -> str:
        await wf.sleep(0.4)
        return await after_nap()

    with pytest.raises(Boom):
        await nap()
    fail[0] = False
    began = time.monotonic()
    assert await nap() == "ok"
    assert time.monotonic() - began < 0.2


async def test_a_restart_in_the_middle_sleeps_only_what_is_left(make_wf) -> None:
    # The process "restarts" (a new Workflow on the same data) after the wake-up time
    # was checkpointed: the second execution sleeps only until the original deadline.
    wf1: Workflow = make_wf()

    def define(wf: Workflow) -> Any:
        @wf.workflow(id="nap")
        async def nap() -> float:
            await wf.sleep(1.0)
            return time.time()

        return nap

    nap1 = define(wf1)
    first = asyncio.create_task(nap1())
    await asyncio.sleep(0.5)
    first.cancel()  # interrupted mid-sleep: its lease is released
    with pytest.raises(asyncio.CancelledError):
        await first
    run = await wf1.get_run("nap")
    assert run is not None
    assert run.status == "running"
    wake_at = run.steps[0].value["wake_at"]

    wf2: Workflow = make_wf()
    nap2 = define(wf2)
    restarted = time.time()
    woke = await nap2()
    assert wake_at <= woke < wake_at + 0.3
    assert woke - restarted < 0.8  # not a whole second after the restart


async def test_sleep_until_an_aware_datetime(make_wf) -> None:
    wf: Workflow = make_wf()
    target = dt.datetime.now(dt.timezone(dt.timedelta(hours=5))) + dt.timedelta(seconds=0.3)

    @wf.workflow(id="alarm")
    async def alarm() -> float:
        await wf.sleep_until(target)
        return time.time()

    woke = await alarm()
    assert target.timestamp() <= woke < target.timestamp() + 0.3
    run = await wf.get_run("alarm")
    assert run is not None
    assert run.steps[0].value["wake_at"] == pytest.approx(target.timestamp())


async def test_sleep_until_a_past_time_returns_at_once(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="late")
    async def late() -> str:
        await wf.sleep_until(dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
        return "awake"

    began = time.monotonic()
    assert await late() == "awake"
    assert time.monotonic() - began < 0.2


async def test_sleep_outside_a_workflow_is_an_error(make_wf) -> None:
    wf: Workflow = make_wf()
    with pytest.raises(NotInWorkflowError):
        await wf.sleep(0.01)
    with pytest.raises(NotInWorkflowError):
        await wf.sleep_until(dt.datetime.now(dt.UTC))


@pytest.mark.slow
def test_a_process_killed_mid_sleep_wakes_at_the_original_time(
    spawn, db_file, ledger, ledger_lines
) -> None:
    first_start = time.time()
    first = spawn("sleep", db_file, ledger, "k", 2.0)
    first.wait_for("sleeping")
    time.sleep(0.8)
    first.kill()
    with sqlite3.connect(db_file) as conn:
        (value,) = conn.execute(
            "SELECT result FROM steps WHERE run_id = 'sleeper-k' AND step_id = '$sleep'"
        ).fetchone()
    wake_at = json.loads(value)["wake_at"]
    assert wake_at - first_start <= 2.0 + 1.5  # the first process's start-up, then 2 s

    restarted = time.time()
    second = spawn("sleep", db_file, ledger, "k", 2.0)
    code, events, err = second.finish()
    assert code == 0, err
    woke = next(e for e in events if e["event"] == "woke")["at"]
    # It woke at the deadline the first process checkpointed, not 2 s after the restart.
    assert wake_at <= woke < wake_at + 0.5
    assert woke - restarted < 1.8
    # "before" ran once (replayed in the second process), "after" once.
    assert [(s, w) for _, s, w in ledger_lines()] == [
        ("before", "start"),
        ("before", "end"),
        ("after", "start"),
        ("after", "end"),
    ]
