"""A run id belongs to one workflow and one set of inputs; a workflow never awaits itself."""

import asyncio
from collections import Counter
from typing import Any

import pytest

from durable import (
    DurableError,
    InputsConflictError,
    RecursiveRunError,
    RunConflictError,
    Workflow,
)


class Crash(Exception):
    pass


# -- another workflow's run id --------------------------------------------------------------


async def test_another_workflow_of_the_same_app_cannot_take_a_run_id(make_wf) -> None:
    wf = make_wf()
    ran: Counter[str] = Counter()

    @wf.workflow(id="order-{n}")
    async def ship(n: int) -> str:
        ran["ship"] += 1
        return f"shipped {n}"

    @wf.workflow(id="order-{n}")
    async def refund(n: int) -> int:
        ran["refund"] += 1
        return -n

    assert await ship(1) == "shipped 1"
    with pytest.raises(RunConflictError) as caught:
        await refund(1)
    message = str(caught.value)
    assert "'order-1'" in message
    assert "app.ship" in message
    assert "app.refund" in message
    assert ran == {"ship": 1}
    record = await wf.get_run("order-1")
    assert record is not None
    assert (record.workflow, record.status, record.result) == ("app.ship", "completed", "shipped 1")


async def test_another_app_on_one_store_cannot_take_a_run_id(make_wf) -> None:
    shop, billing = make_wf("shop"), make_wf("billing")

    @shop.workflow(id="job-{n}")
    async def job(n: int) -> str:
        return "shop"

    @billing.workflow(id="job-{n}", name="job")
    async def billing_job(n: int) -> str:
        return "billing"

    assert await job(7) == "shop"
    with pytest.raises(RunConflictError, match=r"shop\.job"):
        await billing_job(7)


async def test_a_failed_run_of_another_workflow_is_not_resumed_or_changed(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def first() -> str:
        raise Crash

    @wf.workflow(id="r")
    async def second() -> str:
        return "second"

    with pytest.raises(Crash):
        await first()
    before = await wf.get_run("r")
    with pytest.raises(RunConflictError):
        await second()
    after = await wf.get_run("r")
    assert before is not None
    assert after is not None
    assert (after.status, after.owner, after.updated_at, after.workflow) == (
        before.status,
        before.owner,
        before.updated_at,
        "app.first",
    )


# -- other inputs ---------------------------------------------------------------------------


async def test_a_completed_run_called_with_other_inputs_is_a_conflict(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="quote-{customer}")
    async def quote(customer: str, amount: float) -> float:
        return amount * 1.2

    assert await quote("ann", 10.0) == 12.0
    with pytest.raises(InputsConflictError) as caught:
        await quote("ann", 99.0)
    message = str(caught.value)
    assert "'quote-ann'" in message
    assert "amount" in message
    assert "customer" not in message.split("differ:")[1]
    assert isinstance(caught.value, RunConflictError)
    assert isinstance(caught.value, DurableError)


async def test_a_failed_run_resumed_with_other_inputs_is_refused(make_wf) -> None:
    wf = make_wf()
    charged: list[float] = []
    fail = {"now": True}

    @wf.task
    async def charge(amount: float) -> float:
        charged.append(amount)
        return amount

    @wf.workflow(id="pay-{order}")
    async def pay(order: str, amount: float) -> float:
        paid = await charge(amount)
        if fail["now"]:
            raise Crash
        return paid

    with pytest.raises(Crash):
        await pay("o1", 5.0)
    fail["now"] = False
    with pytest.raises(InputsConflictError):
        await pay("o1", 500.0)  # would mix the old checkpoint with the new amount
    assert charged == [5.0]
    # The same inputs resume it: the checkpoint replays.
    assert await pay("o1", 5.0) == 5.0
    assert charged == [5.0]


async def test_a_run_in_flight_in_this_process_called_with_other_inputs_is_refused(
    make_wf,
) -> None:
    wf = make_wf()
    release = asyncio.Event()

    @wf.workflow(id="job")
    async def job(n: int) -> int:
        await release.wait()
        return n

    first = asyncio.ensure_future(job(1))
    await asyncio.sleep(0.05)
    with pytest.raises(InputsConflictError):
        await asyncio.wait_for(job(2), 2)  # not after waiting for the first
    same = asyncio.ensure_future(job(1))  # the same call waits for the first
    release.set()
    assert await first == 1
    assert await same == 1


async def test_a_run_in_flight_elsewhere_called_with_other_inputs_is_refused_at_once(
    make_wf,
) -> None:
    owner, other = make_wf(), make_wf()  # two Workflows on one store: two owners
    release = asyncio.Event()

    @owner.workflow(id="job")
    async def job(n: int) -> int:
        await release.wait()
        return n

    @other.workflow(id="job", name="job")
    async def same_job(n: int) -> int:
        return n

    first = asyncio.ensure_future(job(1))
    await asyncio.sleep(0.05)
    with pytest.raises(InputsConflictError):
        await asyncio.wait_for(same_job(2), 2)  # not after waiting for the owner
    release.set()
    assert await first == 1


async def test_same_inputs_are_the_bound_arguments_with_defaults(make_wf) -> None:
    wf = make_wf()
    bodies: list[int] = []

    @wf.workflow(id="r")
    async def flow(a: int, b: int = 2, *, c: str = "x") -> int:
        bodies.append(a)
        return a + b

    assert await flow(1) == 3
    assert await flow(a=1) == 3
    assert await flow(1, 2) == 3
    assert await flow(1, b=2, c="x") == 3
    assert bodies == [1]
    with pytest.raises(InputsConflictError, match="c"):
        await flow(1, c="y")


async def test_one_and_the_text_one_are_different_inputs(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow(x: Any) -> Any:
        return x

    assert await flow(1) == 1
    with pytest.raises(InputsConflictError):
        await flow("1")


async def test_resume_uses_the_stored_inputs_even_if_a_default_changed(make_wf) -> None:
    old = make_wf()

    @old.workflow(id="r")
    async def flow(a: int, b: int = 2) -> int:
        raise Crash

    with pytest.raises(Crash):
        await flow(1)

    new = make_wf()  # a deploy changed the default (a new process, the same store)

    @new.workflow(id="r", name="flow")
    async def new_flow(a: int, b: int = 50) -> int:
        return a + b

    with pytest.raises(InputsConflictError, match="differ: b"):
        await new_flow(1)  # the same arguments, another default: other inputs
    assert await new.resume("r") == 3  # the inputs the run started with, b=2 included
    record = await new.get_run("r")
    assert record is not None
    assert record.inputs == {"a": 1, "b": 2}


async def test_arguments_without_json_form_count_by_their_type(make_wf) -> None:
    wf = make_wf()

    class Client:
        pass

    @wf.workflow(id="r")
    async def flow(client: Any, n: int) -> int:
        return n

    assert await flow(Client(), 1) == 1
    assert await flow(Client(), 1) == 1  # another instance of the same type: same call
    with pytest.raises(InputsConflictError, match="n"):
        await flow(Client(), 2)


# -- a workflow that awaits itself -----------------------------------------------------------


async def test_a_workflow_awaiting_its_own_run_id_fails_at_once(wf: Workflow) -> None:
    @wf.workflow(id="loop-{n}")
    async def loop(n: int) -> int:
        return await loop(n)  # its own run id

    with pytest.raises(RecursiveRunError, match="loop-1"):
        await asyncio.wait_for(loop(1), 2)
    record = await wf.get_run("loop-1")
    assert record is not None
    assert record.status == "failed"


async def test_mutual_awaits_through_a_branch_fail_at_once(wf: Workflow) -> None:
    @wf.workflow(id="a")
    async def a() -> int:
        return await asyncio.gather(b())  # type: ignore[return-value]

    @wf.workflow(id="b")
    async def b() -> int:
        return await a()

    with pytest.raises(RecursiveRunError, match="'a'"):
        await asyncio.wait_for(a(), 2)


async def test_a_workflow_may_await_another_run_of_itself(wf: Workflow) -> None:
    @wf.workflow(id="count-{n}")
    async def count(n: int) -> int:
        return 0 if n == 0 else 1 + await count(n - 1)

    assert await count(3) == 3


async def test_json_parts_of_an_argument_with_a_client_still_count(make_wf) -> None:
    """A config object holding a client and an order id: the order id tells calls apart."""
    import dataclasses
    import threading

    wf = make_wf()

    @dataclasses.dataclass
    class Job:
        order_id: str
        lock: Any

    @wf.workflow
    async def charge(job: Any) -> str:
        return f"charged {job.order_id}"

    assert await charge.run("job", Job("A", threading.Lock())) == "charged A"
    assert await charge.run("job", Job("A", threading.Lock())) == "charged A"
    with pytest.raises(InputsConflictError):
        await charge.run("job", Job("B", threading.Lock()))
    with pytest.raises(InputsConflictError):
        await charge.run("job", {"order": "B", "client": threading.Lock()})


async def test_an_argument_too_large_for_json_is_a_clear_error(wf: Workflow) -> None:
    from durable import SerializationError

    @wf.workflow
    async def flow(n: int) -> int:
        return 1

    with pytest.raises(SerializationError, match="JSON"):
        await flow.run("big", 10**5000)
    assert await wf.get_run("big") is None
