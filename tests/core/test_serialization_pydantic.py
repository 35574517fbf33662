"""Pydantic v2 models as task results, workflow results and signal payloads."""

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any, Optional

import pytest

pydantic = pytest.importorskip("pydantic", minversion="2")

from durable import SerializationError, Workflow  # noqa: E402
from durable.serialization import from_json, to_json  # noqa: E402


class Crash(Exception):
    pass


class Line(pydantic.BaseModel):
    sku: uuid.UUID
    price: Decimal
    qty: int = 1


class Invoice(pydantic.BaseModel):
    number: str
    issued: dt.datetime
    lines: list[Line]
    paid_on: dt.date | None = None


class Opaque(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    handle: object


LINE = Line(sku=uuid.UUID(int=3), price=Decimal("2.50"), qty=4)
INVOICE = Invoice(number="INV-1", issued=dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC), lines=[LINE])


def test_model_json_form_is_plain_data() -> None:
    assert to_json(LINE) == {"sku": str(uuid.UUID(int=3)), "price": "2.50", "qty": 4}


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        (INVOICE, Invoice),
        ([LINE, LINE], list[Line]),
        ({"a": LINE}, dict[str, Line]),
        (LINE, Optional[Line]),  # noqa: UP045
        (None, Optional[Line]),  # noqa: UP045
        (LINE, Line | None),
        (None, Line | None),
    ],
)
def test_models_round_trip(value: Any, annotation: Any) -> None:
    import json

    assert from_json(json.loads(json.dumps(to_json(value))), annotation) == value


async def _first_and_replayed(wf: Workflow, value: Any, annotation: Any) -> list[Any]:
    async def produce() -> Any:
        return value

    produce.__annotations__["return"] = annotation
    task = wf.task(name="produce")(produce)
    seen: list[Any] = []
    crash = [True]

    @wf.workflow(id="round-trip")
    async def flow() -> None:
        seen.append(await task())
        if crash:
            crash.clear()
            raise Crash

    with pytest.raises(Crash):
        await flow()
    await flow()
    return seen


async def test_replayed_model_is_rebuilt(make_wf) -> None:
    first, replayed = await _first_and_replayed(make_wf(), INVOICE, Invoice)
    assert isinstance(replayed, Invoice)
    assert isinstance(replayed.lines[0], Line)
    assert isinstance(replayed.lines[0].price, Decimal)
    assert replayed == first


async def test_replayed_list_and_dict_of_models(wf: Workflow) -> None:
    _, replayed = await _first_and_replayed(wf, [LINE], list[Line])
    assert all(isinstance(x, Line) for x in replayed)
    _, mapping = await _first_and_replayed(
        Workflow("b", db="memory://"), {"k": LINE}, dict[str, Line]
    )
    assert isinstance(mapping["k"], Line)


async def test_replayed_optional_model(wf: Workflow) -> None:
    _, replayed = await _first_and_replayed(wf, LINE, Line | None)
    assert isinstance(replayed, Line)


async def test_completed_workflow_returns_a_model(wf: Workflow) -> None:
    body = 0

    @wf.workflow(id="r")
    async def flow() -> Invoice:
        nonlocal body
        body += 1
        return INVOICE

    assert await flow() == INVOICE
    again = await flow()
    assert isinstance(again, Invoice)
    assert again == INVOICE
    assert body == 1


async def test_model_signal_payload_is_stored_as_json(wf: Workflow) -> None:
    @wf.workflow(id="r")
    async def flow() -> Any:
        return await wf.signal("s", poll=0.05)

    await wf.complete("r", "s", LINE)
    assert await flow() == to_json(LINE)


async def test_model_that_cannot_be_dumped_raises_serialization_error(wf: Workflow) -> None:
    @wf.task(retries=3)
    async def produce() -> Opaque:
        return Opaque(handle=object())

    @wf.workflow(id="r")
    async def flow() -> None:
        await produce()

    with pytest.raises(SerializationError, match="produce"):
        await flow()


async def test_payload_model_that_cannot_be_dumped_raises_serialization_error(
    wf: Workflow,
) -> None:
    with pytest.raises(SerializationError):
        await wf.complete("r", "s", Opaque(handle=object()))


async def test_workflow_returning_an_undumpable_model_completes_with_a_warning(
    wf: Workflow, caplog: pytest.LogCaptureFixture
) -> None:
    @wf.workflow(id="r")
    async def flow() -> Opaque:
        return Opaque(handle=object())

    with caplog.at_level(logging.WARNING, logger="durable"):
        result = await flow()
    assert isinstance(result, Opaque)
    record = await wf.get_run("r")
    assert record is not None
    assert record.status == "completed"
    assert any("Opaque" in r.getMessage() for r in caplog.records)
