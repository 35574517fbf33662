"""End to end through a :class:`~durable.Workflow`: durable timers, signal timeouts,
cancellation, and inspecting runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ..errors import RunCancelledError, SignalTimeoutError
from ..store import RunRecord, Store
from ..workflow import Workflow
from ._harness import ContractHarness, store_test

#: How many steps the cancelled workflows loop over, and how long each takes.
_LOOP_STEPS = 30
_STEP_SECONDS = 0.02


class EngineOperationChecks(ContractHarness):
    """Timers, signal timeouts, cancellation and inspection through the engine."""

    # -- durable timers ---------------------------------------------------------------

    @store_test(set_up=False)
    async def test_engine_sleep_sleeps_once(self, store: Store) -> None:
        """``wf.sleep`` sleeps; calling the run again after it completed does not."""
        wf = self.make_workflow(store)

        @wf.workflow(id="nap-{n}")
        async def nap(n: int) -> int:
            await wf.sleep(0.2)
            return n

        started = time.monotonic()
        assert await asyncio.wait_for(nap(1), 10) == 1
        assert time.monotonic() - started >= 0.18, "wf.sleep(0.2) did not sleep"
        started = time.monotonic()
        assert await asyncio.wait_for(nap(1), 10) == 1
        assert time.monotonic() - started < 0.15, "a completed run slept again"

    @store_test(set_up=False)
    async def test_engine_sleep_wake_time_survives_interruption(self, store: Store) -> None:
        """A run interrupted mid-sleep (its task cancelled, so the run is released) and
        called again sleeps only what was left: ≈1 s from the first start, not 2 s.

        With ``persistent`` the second call is a new workflow on a store opened again
        after the first was closed; otherwise a second workflow on the same store.
        """
        asleep = asyncio.Event()

        def define(wf: Workflow) -> Callable[[int], Coroutine[Any, Any, str]]:
            @wf.workflow(id="nap-{n}")
            async def nap(n: int) -> str:
                asleep.set()
                await wf.sleep(1.0)
                return "rested"

            return nap

        first = self.make_workflow(store)
        started = time.monotonic()
        run = asyncio.create_task(define(first)(1))
        await asyncio.wait_for(asleep.wait(), 10)
        await asyncio.sleep(0.3)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        if self.records_runs:
            record = await first.get_run("nap-1")
            assert record is not None
            assert (record.status, record.owner) == ("running", None), "the run was not released"
        if self.persistent:
            await first.close()
            second = self.make_workflow(await self.reopen_store())
        else:
            second = self.make_workflow(store)
        assert await asyncio.wait_for(define(second)(1), 10) == "rested"
        elapsed = time.monotonic() - started
        assert elapsed >= 0.95, f"woke after {elapsed:.2f} s, before the sleep's end"
        assert elapsed < 1.6, f"took {elapsed:.2f} s: the sleep started over"

    @store_test(set_up=False)
    async def test_engine_signal_timeout_is_final(self, store: Store) -> None:
        """``wf.signal(name, timeout=...)`` raises ``SignalTimeoutError`` when nothing was
        delivered in time; a later ``wf.complete`` is refused and the run stays timed out."""
        wf = self.make_workflow(store)

        @wf.workflow(id="approve-{n}")
        async def approve(n: int) -> Any:
            return await wf.signal("approval", poll=600.0, timeout=0.2)

        started = time.monotonic()
        with pytest.raises(SignalTimeoutError):
            await asyncio.wait_for(approve(1), 10)
        assert time.monotonic() - started >= 0.15
        assert await wf.complete("approve-1", "approval", {"approved": True}) is False
        with pytest.raises(SignalTimeoutError):
            await asyncio.wait_for(approve(1), 10)
        if self.records_runs:
            record = await wf.get_run("approve-1")
            assert record is not None
            assert record.status == "failed"
            assert "timed out" in (record.error or "")

    # -- cancellation -----------------------------------------------------------------

    def _define_loop(
        self, wf: Workflow, calls: list[int], busy: asyncio.Event
    ) -> Callable[[int], Coroutine[Any, Any, int]]:
        @wf.task
        async def work(i: int) -> int:
            calls.append(i)
            if i == 2:
                busy.set()
            await asyncio.sleep(_STEP_SECONDS)
            return i * i

        @wf.workflow(id="loop-{n}")
        async def loop(n: int) -> int:
            return sum([await work(i, step_id=f"work-{i}") for i in range(n)])

        return loop

    async def _assert_stopped_at_boundary(self, wf: Workflow, calls: list[int]) -> RunRecord:
        record = await wf.get_run(f"loop-{_LOOP_STEPS}")
        assert record is not None
        assert (record.status, record.cancel_requested) == ("cancelled", False)
        assert (record.owner, record.lease_expires_at) == (None, None)
        assert len(calls) < _LOOP_STEPS, "the run did not stop"
        # Every step that ran was checkpointed: the run stopped between two steps.
        assert [step.step_id for step in record.steps] == [f"work-{i}" for i in calls]
        return record

    @store_test("records_runs", "manages_runs", set_up=False)
    async def test_engine_cancel_stops_run_at_step_boundary(self, store: Store) -> None:
        """``wf.cancel`` of a run looping over steps in another task stops it at a step
        boundary with status ``cancelled``; a call then refuses it, ``wf.resume`` runs
        the rest from its checkpoints."""
        wf = self.make_workflow(store)
        calls: list[int] = []
        busy = asyncio.Event()
        loop = self._define_loop(wf, calls, busy)
        run = asyncio.create_task(loop(_LOOP_STEPS))
        await asyncio.wait_for(busy.wait(), 10)
        record = await wf.cancel(f"loop-{_LOOP_STEPS}")
        assert record is not None
        assert (record.status, record.cancel_requested) == ("running", True)
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(run, 10)
        await self._assert_stopped_at_boundary(wf, calls)
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(loop(_LOOP_STEPS), 10)
        expected = sum(i * i for i in range(_LOOP_STEPS))
        assert await asyncio.wait_for(wf.resume(f"loop-{_LOOP_STEPS}"), 10) == expected
        assert calls == list(range(_LOOP_STEPS)), "a checkpointed step ran again"
        done = await wf.get_run(f"loop-{_LOOP_STEPS}")
        assert done is not None
        assert (done.status, done.result) == ("completed", expected)

    @store_test("records_runs", "manages_runs", set_up=False)
    async def test_engine_cancel_from_another_workflow(self, store: Store) -> None:
        """A cancel from another workflow (another process) reaches the run through the
        answer of ``checkpoint_step`` and stops it at a step boundary.

        With ``persistent`` the canceller uses another store object on the same data.
        """
        owner = self.make_workflow(store)
        canceller = self.make_workflow(await self.reopen_store() if self.persistent else store)
        calls: list[int] = []
        busy = asyncio.Event()
        run = asyncio.create_task(self._define_loop(owner, calls, busy)(_LOOP_STEPS))
        await asyncio.wait_for(busy.wait(), 10)
        record = await canceller.cancel(f"loop-{_LOOP_STEPS}")
        assert record is not None
        assert (record.status, record.cancel_requested) == ("running", True)
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(run, 10)
        await self._assert_stopped_at_boundary(canceller, calls)

    # -- inspection -------------------------------------------------------------------

    @store_test("records_runs", set_up=False)
    async def test_engine_list_runs_and_get_run(self, store: Store) -> None:
        """``wf.list_runs`` lists runs newest first, filtered by status and workflow;
        ``wf.get_run`` gives a run's record with its steps (and, with ``manages_runs``,
        its signals, and its steps in order)."""
        wf = self.make_workflow(store)

        @wf.task
        async def double(n: int) -> int:
            return n * 2

        @wf.workflow(id="calc-{n}")
        async def calc(n: int) -> int:
            result = await double(await double(n))
            if n < 0:
                raise ValueError("negative")
            return result

        @wf.workflow(id="greet-{name}")
        async def greet(name: str) -> str:
            return f"{await wf.signal('hello', poll=600.0)} {name}"

        assert await calc(1) == 4
        await asyncio.sleep(0.01)  # distinct creation times, also for coarse clocks
        with pytest.raises(ValueError, match="negative"):
            await calc(-1)
        await asyncio.sleep(0.01)
        assert await wf.complete("greet-ann", "hello", "hi") is True
        assert await asyncio.wait_for(greet("ann"), 10) == "hi ann"

        async def ids(**filters: Any) -> list[str]:
            return [record.run_id for record in await wf.list_runs(**filters)]

        assert await ids() == ["greet-ann", "calc--1", "calc-1"]
        assert await ids(workflow=calc) == ["calc--1", "calc-1"]
        assert await ids(workflow=calc.workflow_id, status="completed") == ["calc-1"]
        assert await ids(status="failed") == ["calc--1"]
        assert await ids(limit=1) == ["greet-ann"]
        done = await wf.get_run("calc-1")
        assert done is not None
        assert (done.status, done.result, done.inputs) == ("completed", 4, {"n": 1})
        failed = await wf.get_run("calc--1")
        assert failed is not None
        assert failed.status == "failed"
        assert "negative" in (failed.error or "")
        for record, steps in (
            (done, [("double", 2), ("double#1", 4)]),
            (failed, [("double", -2), ("double#1", -4)]),
        ):
            listed = [(step.step_id, step.value) for step in record.steps]
            if self.manages_runs:
                assert listed == steps, "steps are not listed oldest first"
            else:
                assert sorted(listed) == sorted(steps)
        greeting = await wf.get_run("greet-ann")
        assert greeting is not None
        assert (greeting.status, greeting.result) == ("completed", "hi ann")
        if self.manages_runs:
            assert [(s.name, s.payload) for s in greeting.signals] == [("hello", "hi")]
        assert await wf.get_run("no-such-run") is None
