"""End to end through a :class:`~durable.Workflow`: replay, resume, signals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ..store import Store
from ..workflow import Workflow
from ._harness import ContractHarness, store_test


class EngineChecks(ContractHarness):
    """End to end through a :class:`~durable.Workflow`: replay, resume, signals."""

    # -- end to end, through the engine ---------------------------------------------

    @store_test(set_up=False)
    async def test_engine_completed_run_replays(self, store: Store) -> None:
        """Calling a completed run again returns its result without running any task."""
        wf = self.make_workflow(store)
        calls: list[str] = []
        bodies: list[int] = []

        @wf.task
        async def fetch(n: int) -> int:
            calls.append(f"fetch {n}")
            return n * 10

        @wf.task
        async def total(values: list[int]) -> dict[str, int]:
            calls.append("total")
            return {"sum": sum(values), "count": len(values)}

        @wf.workflow(id="order-{n}")
        async def order(n: int) -> dict[str, int]:
            bodies.append(n)
            return await total([await fetch(n), await fetch(n + 1), await fetch(n + 2)])

        first = await order(1)
        assert first == {"sum": 60, "count": 3}
        assert calls == ["fetch 1", "fetch 2", "fetch 3", "total"]
        assert await order(1) == first
        assert await order.run("order-1", 1) == first
        assert calls == ["fetch 1", "fetch 2", "fetch 3", "total"], "a replayed task ran again"
        if self.records_runs:
            assert bodies == [1], "the body of a completed run ran again"
            record = await wf.get_run("order-1")
            assert record is not None
            assert (record.status, record.result, record.inputs) == ("completed", first, {"n": 1})
            assert record.workflow == order.workflow_id
        assert await order(2) == {"sum": 90, "count": 3}
        assert len(calls) == 8

    @store_test(set_up=False)
    async def test_engine_failed_run_resumes(self, store: Store) -> None:
        """A failed run called again replays its checkpointed steps and runs the rest."""
        wf = self.make_workflow(store)
        calls: list[str] = []
        declined = [True]

        @wf.task
        async def reserve(item: str) -> str:
            calls.append("reserve")
            return f"reservation-{item}"

        @wf.task
        async def charge(item: str) -> int:
            calls.append("charge")
            if declined[0]:
                raise RuntimeError("card declined")
            return 42

        @wf.workflow(id="buy-{item}")
        async def buy(item: str) -> dict[str, Any]:
            reservation = await reserve(item)
            return {"reservation": reservation, "charge": await charge(item)}

        with pytest.raises(RuntimeError, match="card declined"):
            await buy("book")
        assert calls == ["reserve", "charge"]
        if self.records_runs:
            record = await wf.get_run("buy-book")
            assert record is not None
            assert record.status == "failed"
            assert "card declined" in (record.error or "")
        declined[0] = False
        expected = {"reservation": "reservation-book", "charge": 42}
        assert await buy("book") == expected
        assert calls == ["reserve", "charge", "charge"]
        if self.records_runs:
            record = await wf.get_run("buy-book")
            assert record is not None
            assert record.status == "completed"
            assert record.result == expected
            assert record.has_result is True

    @store_test(set_up=False)
    async def test_engine_signal_wakes_waiting_workflow(self, store: Store) -> None:
        """``wf.complete`` wakes a workflow waiting in ``wf.signal`` at once."""
        wf = self.make_workflow(store)
        waiting = asyncio.Event()

        @wf.task
        async def prepare(doc: str) -> str:
            return f"prepared {doc}"

        @wf.workflow(id="approve-{doc}")
        async def approve(doc: str) -> dict[str, Any]:
            prepared = await prepare(doc)
            waiting.set()
            payload = await wf.signal("approval", poll=600.0)  # woken, never polled
            return {"prepared": prepared, "payload": payload}

        run = asyncio.create_task(approve("d1"))
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.sleep(0.1)  # let it reach wf.signal
        assert not run.done()
        assert await wf.complete("approve-d1", "approval", {"approved": True}) is True
        expected = {"prepared": "prepared d1", "payload": {"approved": True}}
        assert await asyncio.wait_for(run, 10) == expected
        assert await wf.complete("approve-d1", "approval", {"approved": False}) is False
        assert await approve("d1") == expected

    @store_test(set_up=False)
    async def test_engine_signal_delivered_before_wait(self, store: Store) -> None:
        """A signal delivered before the workflow waits returns at once, falsy payloads too."""
        wf = self.make_workflow(store)

        @wf.workflow(id="gate-{n}")
        async def gate(n: int) -> list[Any]:
            return [await wf.signal("first", poll=600.0), await wf.signal("second", poll=600.0)]

        assert await wf.complete("gate-1", "first", 0) is True
        assert await wf.complete("gate-1", "second", None) is True
        assert await wf.complete("gate-1", "second", "late") is False
        assert await asyncio.wait_for(gate(1), 10) == [0, None]

    @store_test(set_up=False)
    async def test_engine_signal_from_another_workflow(self, store: Store) -> None:
        """A signal delivered by another workflow (another process) reaches the waiter.

        With ``persistent`` the sender uses another store object on the same data. The
        waiter polls every 0.2 s, or, with ``notifies_signals``, only every 600 s: then the
        store's notification must wake it.
        """
        poll = 600.0 if self.notifies_signals else 0.2
        receiver = self.make_workflow(store)
        sender = self.make_workflow(await self.reopen_store() if self.persistent else store)
        waiting = asyncio.Event()

        @receiver.workflow(id="inbox-{n}")
        async def inbox(n: int) -> Any:
            waiting.set()
            return await receiver.signal("mail", poll=poll)

        run = asyncio.create_task(inbox(1))
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.sleep(0.1)
        assert await sender.complete("inbox-1", "mail", {"from": "sender"}) is True
        assert await asyncio.wait_for(run, 10) == {"from": "sender"}

    @store_test("records_runs", set_up=False)
    async def test_engine_one_run_from_two_workflows_executes_once(self, store: Store) -> None:
        """Two owners starting one run at once: its tasks execute once, both get the result.

        With ``persistent`` the second owner uses another store object on the same data;
        otherwise both workflows share the store.
        """
        other = await self.reopen_store() if self.persistent else store
        calls: list[str] = []

        def define(wf: Workflow) -> Callable[[str], Coroutine[Any, Any, str]]:
            @wf.task
            async def slow(key: str) -> str:
                calls.append(key)
                await asyncio.sleep(0.3)
                return key.upper()

            @wf.workflow(id="job-{key}")
            async def job(key: str) -> str:
                return await slow(key)

            return job

        first, second = define(self.make_workflow(store)), define(self.make_workflow(other))
        results = await asyncio.gather(first("k"), second("k"))
        assert list(results) == ["K", "K"]
        assert calls == ["k"], "two owners executed the same run"

    @store_test("persistent", set_up=False)
    async def test_engine_replays_after_reopen(self, store: Store) -> None:
        """A new workflow on a reopened store replays the run without running its tasks."""
        calls: list[str] = []

        def define(wf: Workflow) -> Callable[[int], Coroutine[Any, Any, list[int]]]:
            @wf.task
            async def square(n: int) -> int:
                calls.append(f"square {n}")
                return n * n

            @wf.workflow(id="squares-{count}")
            async def squares(count: int) -> list[int]:
                return [await square(i, step_id=f"sq-{i}") for i in range(count)]

            return squares

        first_wf = self.make_workflow(store)
        assert await define(first_wf)(3) == [0, 1, 4]
        await first_wf.close()
        assert await define(self.make_workflow(await self.reopen_store()))(3) == [0, 1, 4]
        assert calls == ["square 0", "square 1", "square 2"]
