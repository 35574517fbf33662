"""``wf.signal(name, timeout=...)``: a checkpointed deadline, and a final timeout."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import pytest

from durable import DurableError, SignalTimeoutError, Workflow


def define(wf: Workflow, timeout: float = 0.3) -> Any:
    @wf.workflow(id="approve-{n}")
    async def approve(n: int) -> Any:
        return await wf.signal("approval", poll=0.05, timeout=timeout)

    return approve


async def test_no_delivery_raises_signal_timeout_after_the_timeout(make_wf) -> None:
    wf: Workflow = make_wf()
    approve = define(wf, timeout=0.3)
    began = time.monotonic()
    with pytest.raises(SignalTimeoutError, match="approval") as info:
        await approve(1)
    waited = time.monotonic() - began
    assert 0.29 <= waited < 1.0
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, DurableError)
    run = await wf.get_run("approve-1")
    assert run is not None
    assert run.status == "failed"
    assert "SignalTimeoutError" in (run.error or "")
    assert [s.step_id for s in run.steps] == ["$signal-timeout:approval"]


async def test_the_timeout_is_final_a_late_delivery_is_refused(make_wf) -> None:
    wf: Workflow = make_wf()
    approve = define(wf, timeout=0.2)
    with pytest.raises(SignalTimeoutError):
        await approve(1)
    assert await wf.complete("approve-1", "approval", {"approved": True}) is False
    # A replay of the run raises the same timeout, at once, despite the late delivery.
    began = time.monotonic()
    with pytest.raises(SignalTimeoutError):
        await approve(1)
    assert time.monotonic() - began < 0.15


async def test_a_caught_timeout_lets_the_workflow_go_on(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow(id="remind-{n}")
    async def remind(n: int) -> str:
        try:
            await wf.signal("ack", poll=0.05, timeout=0.2)
        except TimeoutError:
            return "escalated"
        return "acknowledged"

    assert await remind(1) == "escalated"
    assert await remind(1) == "escalated"  # completed: the recorded result


async def test_a_delivery_before_the_deadline_returns_the_payload(make_wf) -> None:
    wf: Workflow = make_wf()
    approve = define(wf, timeout=5.0)
    waiting = asyncio.create_task(approve(1))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    assert await wf.complete("approve-1", "approval", {"approved": True}) is True
    assert await asyncio.wait_for(waiting, 2) == {"approved": True}
    assert time.monotonic() - began < 0.5


async def test_a_delivery_from_another_workflow_object_before_the_deadline(make_wf) -> None:
    wf, sender = make_wf(), make_wf()
    approve = define(wf, timeout=3.0)
    waiting = asyncio.create_task(approve(2))
    await asyncio.sleep(0.1)
    assert await sender.complete("approve-2", "approval", 0) is True
    assert await asyncio.wait_for(waiting, 2) == 0


async def test_a_delivery_before_the_wait_returns_at_once(make_wf) -> None:
    wf: Workflow = make_wf()
    approve = define(wf, timeout=0.05)
    assert await wf.complete("approve-3", "approval", "yes") is True
    await asyncio.sleep(0.1)  # later than the timeout would be: the payload wins anyway
    assert await approve(3) == "yes"


async def test_a_restarted_run_waits_only_for_what_is_left(make_wf) -> None:
    wf1: Workflow = make_wf()
    first = asyncio.create_task(define(wf1, timeout=1.0)(4))
    await asyncio.sleep(0.5)
    first.cancel()  # interrupted mid-wait, its lease released
    with pytest.raises(asyncio.CancelledError):
        await first
    run = await wf1.get_run("approve-4")
    assert run is not None
    deadline = run.steps[0].value["deadline"]

    wf2: Workflow = make_wf()
    restarted = time.time()
    with pytest.raises(SignalTimeoutError):
        await define(wf2, timeout=1.0)(4)
    ended = time.time()
    assert deadline <= ended < deadline + 0.4
    assert ended - restarted < 0.8


@pytest.mark.slow
def test_a_killed_process_waits_after_restart_only_until_the_original_deadline(
    spawn, db_file
) -> None:
    first = spawn("signal", db_file, "approval-9", "approval", 2.0)
    first.wait_for("waiting")
    time.sleep(0.8)
    first.kill()
    with sqlite3.connect(db_file) as conn:
        (value,) = conn.execute(
            "SELECT result FROM steps WHERE run_id = 'approval-9' "
            "AND step_id = '$signal-timeout:approval'"
        ).fetchone()
    deadline = json.loads(value)["deadline"]

    restarted = time.time()
    second = spawn("signal", db_file, "approval-9", "approval", 2.0)
    code, events, err = second.finish()
    assert code == 4, err  # the worker's exit code for SignalTimeoutError
    timed_out = next(e for e in events if e["event"] == "timeout")
    assert timed_out["error"] == "SignalTimeoutError"
    assert deadline <= timed_out["t"] < deadline + 0.6
    assert timed_out["t"] - restarted < 1.8
