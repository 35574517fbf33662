"""Run records through ``wf.get_run``: workflow, inputs, status, result, error, times."""

import asyncio
import datetime as dt
from dataclasses import dataclass

import pytest

from durable import RunRecord, Workflow


@dataclass
class Address:
    city: str
    zip: str


async def _record(wf: Workflow, run_id: str) -> RunRecord:
    record = await wf.get_run(run_id)
    assert record is not None, f"no record for {run_id!r}"
    return record


async def test_unknown_run_has_no_record(make_wf) -> None:
    wf = make_wf()
    assert await wf.get_run("never-started") is None


async def test_completed_run_record(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="order-{order_id}")
    async def process(order_id: str, qty: int = 2) -> dict[str, object]:
        return {"order": order_id, "qty": qty, "ok": True}

    await process("42", qty=3)
    record = await _record(wf, "order-42")
    assert record.run_id == "order-42"
    assert record.workflow == "app.process"
    assert record.status == "completed"
    assert record.inputs == {"order_id": "42", "qty": 3}
    assert record.result == {"order": "42", "qty": 3, "ok": True}
    assert record.error is None


async def test_workflow_name_option_is_the_recorded_workflow(make_wf) -> None:
    wf = make_wf("shop")

    @wf.workflow(id="r", name="checkout")
    async def process() -> None:
        pass

    await process()
    assert (await _record(wf, "r")).workflow == "shop.checkout"


async def test_inputs_are_stored_as_json(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="ship-{order_id}")
    async def ship(order_id: str, to: Address, when: dt.date, tags: tuple[str, ...]) -> None:
        pass

    await ship("7", Address("Oslo", "0150"), dt.date(2024, 1, 31), ("a", "b"))
    record = await _record(wf, "ship-7")
    assert record.inputs == {
        "order_id": "7",
        "to": {"city": "Oslo", "zip": "0150"},
        "when": "2024-01-31",
        "tags": ["a", "b"],
    }


async def test_failed_run_records_the_error_text(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> None:
        raise ValueError("bad input: qty=-1")

    with pytest.raises(ValueError, match="bad input"):
        await flow()
    record = await _record(wf, "r")
    assert record.status == "failed"
    assert record.error == "ValueError: bad input: qty=-1"
    assert record.result is None


async def test_running_status_is_visible_while_the_body_executes(make_wf) -> None:
    wf = make_wf()
    seen: list[RunRecord] = []

    @wf.workflow(id="r")
    async def flow() -> None:
        seen.append(await _record(wf, "r"))

    await flow()
    assert seen[0].status == "running"
    assert seen[0].workflow == "app.flow"
    assert (await _record(wf, "r")).status == "completed"


async def test_timestamps_are_set_and_advance(make_wf) -> None:
    wf = make_wf()
    fail = [True]

    @wf.workflow(id="r")
    async def flow() -> int:
        if fail:
            fail.clear()
            raise RuntimeError("first time")
        return 1

    with pytest.raises(RuntimeError):
        await flow()
    failed = await _record(wf, "r")
    assert isinstance(failed.created_at, dt.datetime)
    assert isinstance(failed.updated_at, dt.datetime)
    assert failed.created_at <= failed.updated_at

    await asyncio.sleep(0.02)
    await flow()
    done = await _record(wf, "r")
    assert done.status == "completed"
    assert done.created_at == failed.created_at
    assert done.updated_at is not None
    assert done.updated_at > failed.updated_at


async def test_timestamps_are_close_to_now(make_wf) -> None:
    wf = make_wf()

    @wf.workflow(id="r")
    async def flow() -> None:
        pass

    before = dt.datetime.now(dt.UTC)
    await flow()
    after = dt.datetime.now(dt.UTC)
    record = await _record(wf, "r")
    assert record.created_at is not None
    assert record.updated_at is not None

    def aware(t: dt.datetime) -> dt.datetime:
        return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)

    slack = dt.timedelta(seconds=1)
    assert before - slack <= aware(record.created_at) <= after + slack
    assert before - slack <= aware(record.updated_at) <= after + slack


async def test_records_are_visible_to_a_new_process(make_wf) -> None:
    first = make_wf()

    @first.workflow(id="r")
    async def flow(x: int) -> int:
        return x + 1

    await flow(1)
    record = await _record(make_wf(), "r")
    assert (record.status, record.inputs, record.result) == ("completed", {"x": 1}, 2)
