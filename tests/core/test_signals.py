"""``wf.signal`` (a durable wait inside a workflow) and ``wf.complete`` (delivery)."""

import asyncio
import time
from typing import Any

import pytest

from durable import DurableError, InMemoryStore, NotInWorkflowError, SerializationError, Workflow


class Crash(Exception):
    pass


async def test_signal_outside_a_workflow_is_a_durable_runtime_error(wf: Workflow) -> None:
    with pytest.raises(RuntimeError, match="approval") as info:
        await wf.signal("approval")
    assert isinstance(info.value, DurableError)
    assert isinstance(info.value, NotInWorkflowError)


async def test_complete_returns_true_once_then_false(make_wf) -> None:
    wf = make_wf()
    assert await wf.complete("order-1", "approval", {"approved": True}) is True
    assert await wf.complete("order-1", "approval", {"approved": False}) is False
    assert await wf.complete("order-1", "approval", {"approved": True}) is False
    # Another name or another run is another signal.
    assert await wf.complete("order-1", "shipped") is True
    assert await wf.complete("order-2", "approval") is True


async def test_the_first_payload_wins(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="order-{n}")
    async def flow(n: int) -> Any:
        return await wf.signal("approval", poll=0.05)

    await wf.complete("order-1", "approval", {"by": "first"})
    await wf.complete("order-1", "approval", {"by": "second"})
    assert await flow(1) == {"by": "first"}


@pytest.mark.parametrize("payload", [None, 0, False, "", 0.0, [], {}])
async def test_falsy_payloads_survive_exactly(make_wf, payload: Any) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("s", poll=0.05)

    assert await wf.complete("r", "s", payload) is True
    result = await asyncio.wait_for(flow(), 2)
    assert result == payload
    assert type(result) is type(payload)
    assert await wf.store.get_signal("r", "s") == (True, payload)


@pytest.mark.parametrize("payload", [None, 0, False, ""])
async def test_falsy_payload_delivered_while_waiting_wakes_the_run(make_wf, payload: Any) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("s", poll=0.05)

    waiting = asyncio.create_task(flow())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await wf.complete("r", "s", payload)
    result = await asyncio.wait_for(waiting, 2)
    assert result == payload
    assert type(result) is type(payload)


async def test_a_waiting_workflow_wakes_promptly_on_in_process_complete(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("approval", poll=30)

    waiting = asyncio.create_task(flow())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    started = time.monotonic()
    assert await wf.complete("r", "approval", {"ok": 1}) is True
    assert await asyncio.wait_for(waiting, 2) == {"ok": 1}
    assert time.monotonic() - started < 1.0


async def test_a_signal_delivered_before_the_wait_returns_at_once(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("approval", poll=30)

    await wf.complete("r", "approval", "yes")
    started = time.monotonic()
    assert await asyncio.wait_for(flow(), 2) == "yes"
    assert time.monotonic() - started < 1.0


async def test_delivery_from_another_process_is_seen_within_the_poll(make_wf) -> None:
    waiter, sender = make_wf(), make_wf()
    for owner in (waiter, sender):  # open both stores before the run starts
        await owner.get_run("r")

    @waiter.workflow(id="r")
    async def flow() -> Any:
        return await waiter.signal("approval", poll=0.05)

    waiting = asyncio.create_task(flow())
    await asyncio.sleep(0.1)
    assert await sender.complete("r", "approval", [1, 2]) is True
    assert await asyncio.wait_for(waiting, 2) == [1, 2]


async def test_replay_after_a_restart_returns_the_stored_payload(make_wf) -> None:
    steps: list[str] = []
    broken = [True]

    def define(wf: Workflow):
        @wf.task(retries=0)
        async def act(decision: dict[str, Any]) -> str:
            steps.append("act")
            if broken:
                raise Crash
            return f"approved={decision['approved']}"

        @wf.workflow(id="order-{n}")
        async def flow(n: int) -> str:
            decision = await wf.signal("approval", poll=0.05)
            return await act(decision)

        return flow

    first = make_wf()
    flow = define(first)
    waiting = asyncio.create_task(flow(1))
    await asyncio.sleep(0.05)
    await first.complete("order-1", "approval", {"approved": True})
    with pytest.raises(Crash):
        await asyncio.wait_for(waiting, 2)

    broken.clear()
    restarted = define(make_wf())
    assert await asyncio.wait_for(restarted(1), 2) == "approved=True"
    assert steps == ["act", "act"]


async def test_signals_of_different_runs_are_separate(wf: Workflow) -> None:
    @wf.workflow(id="order-{n}")
    async def flow(n: int) -> Any:
        return await wf.signal("approval", poll=0.05)

    one = asyncio.create_task(flow(1))
    two = asyncio.create_task(flow(2))
    await asyncio.sleep(0.05)
    await wf.complete("order-2", "approval", "two")
    assert await asyncio.wait_for(two, 2) == "two"
    await asyncio.sleep(0.1)
    assert not one.done()
    await wf.complete("order-1", "approval", "one")
    assert await asyncio.wait_for(one, 2) == "one"


async def test_a_non_json_payload_raises_serialization_error(make_wf) -> None:
    wf = make_wf()
    with pytest.raises(SerializationError) as info:
        await wf.complete("r", "approval", object())
    assert isinstance(info.value, DurableError)
    assert "approval" in str(info.value)
    assert "object" in str(info.value)
    # Nothing was stored: a valid delivery afterwards is the first one.
    assert await wf.complete("r", "approval", "ok") is True


async def test_rich_payloads_are_stored_as_json(wf: Workflow) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("s", poll=0.05)

    key = uuid.UUID(int=7)
    await wf.complete("r", "s", {"at": dt.date(2024, 1, 2), "id": key, "amount": Decimal("1.5")})
    assert await flow() == {"at": "2024-01-02", "id": str(key), "amount": "1.5"}


class _ReadThenYieldStore(InMemoryStore):
    """Reads a signal, then yields before returning, like any store with real I/O."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        found = await super().get_signal(run_id, name)
        self.reading.set()
        await asyncio.sleep(0.05)
        return found


async def test_a_delivery_during_the_first_read_still_wakes_promptly() -> None:
    store = _ReadThenYieldStore()
    wf = Workflow("app", db=store)

    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("approval", poll=30)

    waiting = asyncio.create_task(flow())
    await asyncio.wait_for(store.reading.wait(), 2)
    assert await wf.complete("r", "approval", "yes") is True
    try:
        assert await asyncio.wait_for(waiting, 1) == "yes"
    finally:
        waiting.cancel()
