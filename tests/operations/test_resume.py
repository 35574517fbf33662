"""``wf.resume(run_id)``: a failed, cancelled or dead run runs again from its
checkpoints, with the arguments its record stored."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from durable import DurableError, RunCancelledError, Workflow


class Boom(Exception):
    pass


@dataclasses.dataclass
class Order:
    order_id: str
    amount: float


def shop(wf: Workflow, ran: list[str], fail: list[bool]) -> Any:
    @wf.task
    async def charge(order: Order) -> str:
        ran.append(f"charge {order.order_id}")
        return f"ch_{order.order_id}"

    @wf.task(retries=0)
    async def ship(order: Order, copies: int) -> str:
        ran.append(f"ship {order.order_id}")
        if fail[0]:
            raise Boom("warehouse closed")
        return f"shipped {copies}"

    @wf.workflow(id="order-{order.order_id}")
    async def process(order: Order, copies: int = 1, *, note: str = "") -> str:
        charged = await charge(order)
        shipped = await ship(order, copies)
        return f"{charged} {shipped} {order.amount} {note}"

    return process


async def test_a_failed_run_resumes_with_its_stored_inputs(make_wf) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []
    fail = [True]
    process = shop(wf, ran, fail)
    with pytest.raises(Boom):
        await process(Order("7", 9.5), 2, note="gift")
    assert ran == ["charge 7", "ship 7"]

    fail[0] = False
    ran.clear()
    # No arguments: they are rebuilt from the record, into the annotated types.
    assert await wf.resume("order-7") == "ch_7 shipped 2 9.5 gift"
    assert ran == ["ship 7"]  # charge replayed from its checkpoint
    run = await wf.get_run("order-7")
    assert run is not None
    assert run.status == "completed"
    assert run.inputs == {"order": {"order_id": "7", "amount": 9.5}, "copies": 2, "note": "gift"}


async def test_resume_in_a_new_workflow_object_uses_the_stored_inputs(make_wf) -> None:
    ran: list[str] = []
    fail = [True]
    process = shop(make_wf(), ran, fail)
    with pytest.raises(Boom):
        await process(Order("8", 1.0))
    fail[0] = False
    ran.clear()
    restarted: Workflow = make_wf()  # the "next process"
    shop(restarted, ran, fail)
    assert await restarted.resume("order-8") == "ch_8 shipped 1 1.0 "
    assert ran == ["ship 8"]


async def test_a_cancelled_run_resumes_from_its_checkpoints(make_wf, wait_until) -> None:
    wf: Workflow = make_wf()
    ran: list[int] = []

    @wf.task
    async def work(i: int) -> int:
        ran.append(i)
        await asyncio.sleep(0.1)
        return i

    @wf.workflow(id="loop")
    async def loop(n: int) -> int:
        return sum([await work(i, step_id=f"s{i}") for i in range(n)])

    running = asyncio.create_task(loop(6))
    await wait_until(lambda: 1 in ran)
    await wf.cancel("loop")
    with pytest.raises(RunCancelledError):
        await running
    assert ran == [0, 1]
    assert await wf.resume("loop") == sum(range(6))
    assert ran == [0, 1, 2, 3, 4, 5]
    run = await wf.get_run("loop")
    assert run is not None
    assert run.status == "completed"
    assert run.result == 15
    assert await loop(6) == 15  # plain calls see the completed run


async def test_resume_of_a_cancelled_sleep_wakes_at_the_original_time(make_wf) -> None:
    wf: Workflow = make_wf()
    loop = asyncio.get_running_loop()

    @wf.workflow(id="nap")
    async def nap() -> float:
        await wf.sleep(0.6)
        return loop.time()

    began = loop.time()
    running = asyncio.create_task(nap())
    await asyncio.sleep(0.2)
    await wf.cancel("nap")
    with pytest.raises(RunCancelledError):
        await running
    woke = await wf.resume("nap")
    assert 0.55 <= woke - began < 0.9


async def test_resume_of_a_completed_run_returns_its_result(make_wf) -> None:
    wf: Workflow = make_wf()
    ran: list[str] = []

    @wf.workflow(id="once")
    async def once(x: int) -> int:
        ran.append("body")
        return x * 2

    assert await once(21) == 42
    assert await wf.resume("once") == 42
    assert ran == ["body"]


async def test_resume_of_an_unknown_run_is_a_clear_error(make_wf) -> None:
    wf: Workflow = make_wf()

    @wf.workflow
    async def flow() -> None:
        return None

    with pytest.raises(DurableError, match="no run 'nobody'"):
        await wf.resume("nobody")


async def test_resume_of_a_run_of_a_workflow_not_defined_here_is_a_clear_error(
    make_wf,
) -> None:
    other: Workflow = make_wf("billing")

    @other.workflow(id="invoice-{n}")
    async def invoice(n: int) -> int:
        raise Boom("later")

    with pytest.raises(Boom):
        await invoice(1)

    here: Workflow = make_wf("shop")

    @here.workflow
    async def process() -> None:
        return None

    with pytest.raises(DurableError, match=r"billing\.invoice") as info:
        await here.resume("invoice-1")
    assert "not defined on this Workflow" in str(info.value)
    assert "shop.process" in str(info.value)
    run = await here.get_run("invoice-1")
    assert run is not None
    assert run.status == "failed"


async def test_a_failed_run_whose_inputs_could_not_be_stored_is_not_reopened(
    make_wf,
) -> None:
    # The arguments could not be stored as JSON, so resume() cannot rebuild them: it
    # says so, and must leave the run failed rather than reopen it for nobody.
    wf: Workflow = make_wf()

    class Opaque:
        pass

    @wf.workflow(id="opaque")
    async def opaque(thing: Opaque) -> None:
        raise Boom("once")

    with pytest.raises(Boom):
        await opaque(Opaque())
    with pytest.raises(DurableError, match="no stored inputs"):
        await wf.resume("opaque")
    run = await wf.get_run("opaque")
    assert run is not None
    assert run.status == "failed"
