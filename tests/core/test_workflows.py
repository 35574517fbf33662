"""``@wf.workflow``: run ids, completed runs, resumed runs, unstorable results, nesting."""

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from durable import IdTemplateError, Workflow
from durable.backoff import constant


class Crash(Exception):
    pass


@dataclass
class Order:
    id: str
    qty: int = 1


@dataclass
class Receipt:
    order_id: str
    total: Decimal
    at: dt.datetime


# -- run ids -----------------------------------------------------------------------------


async def test_id_template_with_keyword_argument(wf: Workflow) -> None:
    @wf.workflow(id="order-{order_id}")
    async def process(order_id: str) -> str:
        return f"done {order_id}"

    assert process.run_id_for(order_id="42") == "order-42"
    assert await process(order_id="42") == "done 42"
    record = await wf.get_run("order-42")
    assert record is not None
    assert record.status == "completed"


async def test_id_template_with_positional_argument(wf: Workflow) -> None:
    @wf.workflow(id="order-{order_id}")
    async def process(order_id: str) -> str:
        return order_id

    assert process.run_id_for("42") == "order-42"
    await process("42")
    assert await wf.get_run("order-42") is not None


async def test_id_template_with_several_arguments_and_defaults(wf: Workflow) -> None:
    @wf.workflow(id="job-{kind}-{n}-{region}")
    async def job(kind: str, n: int = 1, *, region: str = "eu") -> None:
        pass

    assert job.run_id_for("sync") == "job-sync-1-eu"
    assert job.run_id_for("sync", 3, region="us") == "job-sync-3-us"
    assert job.run_id_for(kind="sync", n=7) == "job-sync-7-eu"


def test_id_template_with_nested_attribute_and_item_fields(wf: Workflow) -> None:
    @wf.workflow(id="order-{order.id}-x{order.qty}")
    async def process(order: Order) -> None:
        pass

    @wf.workflow(id="user-{user[name]}")
    async def greet(user: dict[str, str]) -> None:
        pass

    assert process.run_id_for(Order("A7", 3)) == "order-A7-x3"
    assert greet.run_id_for({"name": "ann"}) == "user-ann"


def test_id_template_with_a_missing_attribute_fails_clearly(wf: Workflow) -> None:
    @wf.workflow(id="order-{order.missing}")
    async def process(order: Order) -> None:
        pass

    with pytest.raises(IdTemplateError, match="missing"):
        process.run_id_for(Order("A"))


def test_default_run_id_joins_app_function_and_arguments(wf: Workflow) -> None:
    @wf.workflow
    async def process(a: int, b: str, c: str = "d") -> None:
        pass

    assert process.run_id_for(42, "x") == "app-process-42-x-d"
    assert process.run_id_for(1, b="y", c="z") == "app-process-1-y-z"


def test_default_run_id_without_arguments(wf: Workflow) -> None:
    @wf.workflow()
    async def nightly() -> None:
        pass

    assert nightly.run_id_for() == "app-nightly"


async def test_call_uses_the_templated_run_id(wf: Workflow) -> None:
    @wf.workflow
    async def process(a: int) -> int:
        return a

    await process(5)
    record = await wf.get_run("app-process-5")
    assert record is not None
    assert record.result == 5


async def test_run_with_an_explicit_run_id(wf: Workflow, store) -> None:
    @wf.task
    async def step(x: str) -> str:
        return x + "!"

    @wf.workflow(id="order-{order_id}")
    async def process(order_id: str, note: str = "") -> str:
        return await step(order_id + note)

    assert await process.run("explicit", "42", note="n") == "42n!"
    assert await store.get_step("explicit", "step") == (True, "42n!")
    assert await wf.get_run("order-42") is None
    record = await wf.get_run("explicit")
    assert record is not None
    assert record.inputs == {"order_id": "42", "note": "n"}


# -- completed runs ----------------------------------------------------------------------


async def test_a_completed_run_returns_its_recorded_result_without_running(make_wf) -> None:
    wf = make_wf()
    body = 0
    steps = 0

    @wf.task
    async def step() -> int:
        nonlocal steps
        steps += 1
        return 7

    @wf.workflow(id="r")
    async def flow() -> dict[str, int]:
        nonlocal body
        body += 1
        return {"value": await step()}

    assert await flow() == {"value": 7}
    assert await flow() == {"value": 7}
    assert (body, steps) == (1, 1)


async def test_a_completed_run_is_not_run_again_by_a_new_process(make_wf) -> None:
    body = 0

    def define(wf: Workflow):
        @wf.workflow(id="r")
        async def flow(x: int) -> int:
            nonlocal body
            body += 1
            return x * 2

        return flow

    assert await define(make_wf())(21) == 42
    assert await define(make_wf())(21) == 42
    assert body == 1


async def test_a_completed_run_result_is_rebuilt_into_the_return_type(make_wf) -> None:
    body = 0

    def define(wf: Workflow):
        @wf.workflow(id="r")
        async def flow() -> Receipt:
            nonlocal body
            body += 1
            return Receipt("42", Decimal("9.99"), dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC))

        return flow

    first = await define(make_wf())()
    again = await define(make_wf())()
    assert body == 1
    assert isinstance(again, Receipt)
    assert isinstance(again.total, Decimal)
    assert isinstance(again.at, dt.datetime)
    assert again == first


async def test_a_completed_run_returning_none_is_not_run_again(wf: Workflow) -> None:
    body = 0

    @wf.workflow(id="r")
    async def flow() -> None:
        nonlocal body
        body += 1

    assert await flow() is None
    assert await flow() is None
    assert body == 1


# -- failed runs -------------------------------------------------------------------------


async def test_a_failed_run_resumes_when_called_again(make_wf) -> None:
    wf = make_wf()
    calls: list[str] = []
    broken = [True]

    @wf.task(retries=0)
    async def reserve() -> str:
        calls.append("reserve")
        return "R1"

    @wf.task(retries=0)
    async def charge(reservation: str) -> str:
        calls.append("charge")
        if broken:
            raise Crash("card declined")
        return f"paid {reservation}"

    @wf.workflow(id="order-{order_id}")
    async def process(order_id: str) -> str:
        return await charge(await reserve())

    with pytest.raises(Crash):
        await process("1")
    record = await wf.get_run("order-1")
    assert record is not None
    assert record.status == "failed"

    broken.clear()
    assert await process("1") == "paid R1"
    assert calls == ["reserve", "charge", "charge"]
    record = await wf.get_run("order-1")
    assert record is not None
    assert record.status == "completed"
    assert record.error is None


async def test_a_new_run_skips_loading_steps_and_a_resumed_one_loads_them(
    db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose record the claim just made has no steps to load: one query saved per run."""
    store = db()
    loads: list[str] = []
    real_load = store.load_steps

    async def counted_load(run_id: str) -> Any:
        loads.append(run_id)
        return await real_load(run_id)

    monkeypatch.setattr(store, "load_steps", counted_load)
    wf = Workflow("app", db=store, default_backoff=constant(0))
    executed: list[int] = []
    broken = [True]

    @wf.task
    async def step(i: int) -> int:
        executed.append(i)
        return i

    @wf.workflow(id="job-{key}")
    async def job(key: str) -> int:
        total = await step(1) + await step(2)
        if broken:
            raise Crash("after both steps")
        return total

    async with wf:
        with pytest.raises(Crash):
            await job("a")
        assert loads == []  # created by its claim: nothing to load
        broken.clear()
        assert await job("a") == 3
        assert loads == ["job-a"]  # on record: its steps are loaded, and replayed
        assert executed == [1, 2]
        assert await job("b") == 3
        assert loads == ["job-a"]


async def test_a_failure_in_the_body_after_all_steps_replays_every_step(wf: Workflow) -> None:
    steps = 0
    body = 0

    @wf.task
    async def step() -> int:
        nonlocal steps
        steps += 1
        return 1

    @wf.workflow(id="r")
    async def flow() -> int:
        nonlocal body
        body += 1
        value = await step()
        if body == 1:
            raise Crash
        return value

    with pytest.raises(Crash):
        await flow()
    assert await flow() == 1
    assert (body, steps) == (2, 1)


# -- unstorable workflow results -----------------------------------------------------------


class Handle:
    """Something a workflow might return that has no JSON form."""


async def test_unstorable_result_completes_with_a_warning_and_reruns_body_later(
    wf: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    body = 0
    steps = 0

    @wf.task
    async def step() -> int:
        nonlocal steps
        steps += 1
        return 5

    @wf.workflow(id="r")
    async def flow() -> Handle:
        nonlocal body
        body += 1
        await step()
        return Handle()

    with caplog.at_level(logging.WARNING, logger="durable"):
        result = await flow()
    assert isinstance(result, Handle)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "durable"]
    assert any("Handle" in r.getMessage() for r in warnings), warnings
    record = await wf.get_run("r")
    assert record is not None
    assert record.status == "completed"

    again = await flow()
    assert isinstance(again, Handle)
    assert again is not result
    assert (body, steps) == (2, 1)


# -- nesting -----------------------------------------------------------------------------


async def test_a_workflow_can_call_another_workflow(wf: Workflow, store) -> None:
    calls: list[str] = []
    broken = [True]

    @wf.task
    async def inner_step(x: int) -> int:
        calls.append("inner_step")
        return x + 1

    @wf.task(retries=0)
    async def outer_step(x: int) -> int:
        calls.append("outer_step")
        if broken:
            raise Crash
        return x * 10

    @wf.workflow(id="child-{x}")
    async def child(x: int) -> int:
        return await inner_step(x)

    @wf.workflow(id="parent-{x}")
    async def parent(x: int) -> int:
        return await outer_step(await child(x))

    with pytest.raises(Crash):
        await parent(1)
    child_record = await wf.get_run("child-1")
    assert child_record is not None
    assert child_record.status == "completed"
    assert child_record.result == 2
    assert await store.load_steps("child-1") == {"inner_step": 2}
    assert await store.load_steps("parent-1") == {}

    broken.clear()
    assert await parent(1) == 20
    assert calls == ["inner_step", "outer_step", "outer_step"]
    assert await store.load_steps("parent-1") == {"outer_step": 20}


async def test_a_task_after_a_nested_workflow_checkpoints_in_the_parent(
    wf: Workflow, store
) -> None:
    @wf.task
    async def step(x: int) -> int:
        return x

    @wf.workflow(id="child")
    async def child() -> int:
        return await step(1)

    @wf.workflow(id="parent")
    async def parent() -> int:
        a = await step(10)
        b = await child()
        c = await step(100)
        return a + b + c

    assert await parent() == 111
    assert await store.load_steps("parent") == {"step": 10, "step#1": 100}
    assert await store.load_steps("child") == {"step": 1}


# -- stores --------------------------------------------------------------------------------


async def test_memory_url_gives_a_working_store() -> None:
    wf = Workflow("app", db="memory://", default_backoff=constant(0))

    @wf.workflow(id="r")
    async def flow() -> str:
        return "ok"

    assert await flow() == "ok"


async def test_a_bare_path_means_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("durable_sqlite")
    path = tmp_path / "t.db"
    wf = Workflow("app", db=path, default_backoff=constant(0))
    try:

        @wf.task
        async def step() -> str:
            return "checkpointed"

        @wf.workflow(id="r")
        async def flow() -> str:
            return await step()

        assert await flow() == "checkpointed"
        assert path.exists()
        assert await wf.store.get_step("r", "step") == (True, "checkpointed")
    finally:
        await wf.close()


async def test_a_cyclic_result_completes_with_a_warning(wf: Workflow) -> None:
    @wf.workflow(id="r")
    async def flow() -> list[object]:
        cyclic: list[object] = []
        cyclic.append(cyclic)
        return cyclic

    try:
        await flow()
    finally:
        record = await wf.get_run("r")
        assert record is not None
        assert record.status == "completed"


async def test_a_closed_workflow_can_be_used_again(make_wf) -> None:
    wf = make_wf()

    @wf.task
    async def step(x: int) -> int:
        return x

    @wf.workflow(id="job-{x}")
    async def flow(x: int) -> int:
        return await step(x)

    assert await flow(1) == 1
    await wf.close()
    assert await flow(2) == 2
    assert await flow(1) == 1
    record = await wf.get_run("job-2")
    assert record is not None
    assert record.status == "completed"


async def test_workflow_as_async_context_manager(make_wf) -> None:
    async with make_wf() as wf:

        @wf.workflow(id="r")
        async def flow() -> str:
            return "ok"

        assert await flow() == "ok"
