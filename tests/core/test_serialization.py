"""Values as JSON: ``to_json``/``from_json`` and task results replayed into their type."""

import dataclasses
import datetime as dt
import enum
import json
import socket
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Optional

import pytest

from durable import DurableError, SerializationError, Workflow
from durable.serialization import Unserializable, from_json, to_json


class Crash(Exception):
    pass


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Item:
    sku: uuid.UUID
    price: Decimal
    added: dt.datetime


@dataclasses.dataclass
class Cart:
    owner: str
    items: list[Item]
    color: Color
    due: dt.date | None = None
    note: Optional[str] = None  # noqa: UP045 - the old spelling must work too


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


ITEM = Item(uuid.UUID(int=1), Decimal("19.99"), dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC))
CART = Cart(
    "ann",
    [ITEM, Item(uuid.UUID(int=2), Decimal("0.10"), dt.datetime(2024, 1, 1))],
    Color.BLUE,
    dt.date(2024, 6, 1),
)


def stored(value: Any) -> Any:
    """What a store gives back: the JSON text of ``to_json(value)``, parsed."""
    return json.loads(json.dumps(to_json(value)))


# -- to_json / from_json -----------------------------------------------------------------


ROUND_TRIPS: list[tuple[Any, Any]] = [
    (dt.datetime(2024, 5, 1, 12, 30, 15, 123456), dt.datetime),
    (dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime),
    (dt.date(2024, 2, 29), dt.date),
    (dt.time(23, 59, 1, 500), dt.time),
    (dt.timedelta(hours=1, microseconds=5), dt.timedelta),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID),
    (Decimal("12345678901234567890.000000001"), Decimal),
    (Color.RED, Color),
    (Level.HIGH, Level),
    (ITEM, Item),
    (CART, Cart),
    (Point(1, 2), Point),
    ([Point(1, 2), Point(3, 4)], list[Point]),
    ({"a": Point(1, 2)}, dict[str, Point]),
    ((1, "a"), tuple[int, str]),
    ((1, 2, 3), tuple[int, ...]),
    ({1, 2}, set[int]),
    (frozenset({"x"}), frozenset[str]),
    (Point(1, 2), Optional[Point]),  # noqa: UP045
    (None, Optional[Point]),  # noqa: UP045
    (Point(1, 2), Point | None),
    (None, Point | None),
    ([ITEM], list[Item | None]),
    ({"when": [dt.date(2024, 1, 1)]}, dict[str, list[dt.date]]),
    ({"plain": [1, 2.5, "x", True, None]}, dict[str, Any]),
]


@pytest.mark.parametrize(("value", "annotation"), ROUND_TRIPS)
def test_round_trip_rebuilds_the_annotated_type(value: Any, annotation: Any) -> None:
    rebuilt = from_json(stored(value), annotation)
    assert rebuilt == value
    assert type(rebuilt) is type(value)


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        (Cart("ann", [], Color.RED, due=None), Cart),
        ([ITEM, None], list[Item | None]),
        ({"a": None}, dict[str, Optional[dt.datetime]]),  # noqa: UP045
    ],
)
def test_none_inside_an_optional_is_rebuilt(value: Any, annotation: Any) -> None:
    assert from_json(stored(value), annotation) == value


@pytest.mark.parametrize(
    ("value", "annotation"),
    [({1: "one", 2: "two"}, dict[int, str]), ({Level.HIGH: "x"}, dict[Level, str])],
)
def test_non_string_dict_keys_are_rebuilt(value: Any, annotation: Any) -> None:
    assert from_json(stored(value), annotation) == value


def test_round_trip_rebuilds_nested_field_types() -> None:
    cart = from_json(stored(CART), Cart)
    assert isinstance(cart.items[0], Item)
    assert isinstance(cart.items[0].sku, uuid.UUID)
    assert isinstance(cart.items[0].price, Decimal)
    assert isinstance(cart.items[0].added, dt.datetime)
    assert cart.items[0].added.tzinfo is not None
    assert cart.color is Color.BLUE
    assert isinstance(cart.due, dt.date)


def test_tuple_members_are_rebuilt_by_position() -> None:
    value = from_json(stored((uuid.UUID(int=5), Decimal("1.5"))), tuple[uuid.UUID, Decimal])
    assert value == (uuid.UUID(int=5), Decimal("1.5"))
    assert isinstance(value[0], uuid.UUID)
    assert isinstance(value[1], Decimal)


def test_json_forms_are_plain_and_name_no_class() -> None:
    assert to_json(ITEM) == {
        "sku": "00000000-0000-0000-0000-000000000001",
        "price": "19.99",
        "added": "2024-05-01T12:30:00+00:00",
    }
    assert to_json(Color.RED) == "red"
    assert to_json((1, "a")) == [1, "a"]
    text = json.dumps(to_json(CART))
    assert "Cart" not in text
    assert "Item" not in text


def test_without_an_annotation_the_plain_data_comes_back() -> None:
    data = stored(CART)
    assert from_json(data, Any) == data
    assert from_json(data, dict[str, Any]) == data


def test_to_json_refuses_values_with_no_json_form() -> None:
    with pytest.raises(TypeError, match="object"):
        to_json(object())
    with pytest.raises(TypeError, match=r"\['k'\]"):
        to_json({"k": object()})


@dataclasses.dataclass
class Holder:
    x: Any


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"a": [1, {"b": object()}]}, "['a'][1]['b']", "builtins.object"),
        ((1, [2, object()]), "[1][1]", "builtins.object"),
        (Holder(x=[object()]), ".x[0]", "builtins.object"),
        ([Holder(x=1), {"k": {object()}}], "[1]['k'][0]", "builtins.object"),
        ({"a": {1.5: 1}}, "['a'] (a dict key)", "builtins.float"),
        ({1.5: 1}, "(a dict key)", "builtins.float"),
        (object(), "", "builtins.object"),
    ],
)
def test_to_json_says_where_the_value_with_no_json_form_is(
    value: Any, path: str, type_name: str
) -> None:
    with pytest.raises(Unserializable) as info:
        to_json(value)
    assert info.value.path == path
    assert info.value.type_name == type_name
    where = f" at {path}" if path else ""
    assert str(info.value) == f"{type_name}{where} has no JSON form"


# -- through tasks: the replayed value is rebuilt ---------------------------------------


async def first_and_replayed(wf: Workflow, value: Any, annotation: Any) -> list[Any]:
    """The value a task returns on its first execution and on replay, in that order."""

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
            raise Crash  # after the checkpoint: the next call replays it

    with pytest.raises(Crash):
        await flow()
    await flow()
    assert len(seen) == 2
    return seen


@pytest.mark.parametrize(("value", "annotation"), ROUND_TRIPS)
async def test_replayed_task_result_is_rebuilt(wf: Workflow, value: Any, annotation: Any) -> None:
    first, replayed = await first_and_replayed(wf, value, annotation)
    assert first is value
    assert replayed == value
    assert type(replayed) is type(value)


async def test_replayed_dataclass_through_each_store(make_wf) -> None:
    first, replayed = await first_and_replayed(make_wf(), CART, Cart)
    assert isinstance(replayed, Cart)
    assert isinstance(replayed.items[1], Item)
    assert isinstance(replayed.items[1].price, Decimal)
    assert replayed == first


async def test_replayed_dataclass_with_a_none_optional_field(wf: Workflow) -> None:
    """Today the run fails on every resume: the checkpoint can never be replayed."""
    value = Cart("ann", [ITEM], Color.RED, due=None)
    _, replayed = await first_and_replayed(wf, value, Cart)
    assert replayed == value


async def test_replayed_dict_with_int_keys_keeps_int_keys(wf: Workflow) -> None:
    """Code doing ``result[1]`` works on the first execution, so it must on replay."""
    _, replayed = await first_and_replayed(wf, {1: "one"}, dict[int, str])
    assert replayed[1] == "one"


async def test_replay_with_a_string_annotation(wf: Workflow) -> None:
    """``from __future__ import annotations`` style: the annotation is a string."""
    _, replayed = await first_and_replayed(wf, ITEM, "Item")
    assert isinstance(replayed, Item)


async def test_replay_never_builds_a_class_the_code_does_not_annotate(wf: Workflow) -> None:
    _, replayed = await first_and_replayed(wf, ITEM, dict[str, Any])
    assert type(replayed) is dict
    _, replayed_any = await first_and_replayed(Workflow("b", db="memory://"), ITEM, Any)
    assert type(replayed_any) is dict


# -- unsupported values ------------------------------------------------------------------


def _socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


UNSUPPORTED: list[tuple[Callable[[], Any], str]] = [
    (object, "builtins.object"),
    (_socket, "socket"),
    (lambda: {object(), object()}, "builtins.object"),
    (lambda: {"nested": [1, {"deep": object()}]}, "builtins.object"),
    (lambda: Point(1, object()), "builtins.object"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("make_value", "type_name"), UNSUPPORTED)
async def test_unsupported_task_result_raises_serialization_error(
    make_wf, make_value: Callable[[], Any], type_name: str
) -> None:
    wf = make_wf()
    value = make_value()
    attempts = 0
    counts = {"before": 0}

    @wf.task
    async def before() -> int:
        counts["before"] += 1
        return 1

    @wf.task(name="produce", retries=3)
    async def produce() -> Any:
        nonlocal attempts
        attempts += 1
        return value

    @wf.workflow(id="unsupported-{n}")
    async def flow(n: int) -> str:
        await before()
        await produce(step_id="make-it")
        return "done"

    try:
        with pytest.raises(SerializationError) as info:
            await flow(1)
    finally:
        if isinstance(value, socket.socket):
            value.close()
    error = info.value
    assert isinstance(error, DurableError)
    assert isinstance(error, TypeError)
    message = str(error)
    assert "produce" in message  # the task
    assert "make-it" in message  # the step
    assert "unsupported-1" in message  # the run
    assert type_name in message  # the type
    assert attempts == 1  # not retried

    record = await wf.get_run("unsupported-1")
    assert record is not None
    assert record.status == "failed"
    assert record.error is not None
    assert record.error.startswith("SerializationError: ")
    assert type_name in record.error

    # Earlier checkpoints are kept: a rerun replays them and runs only the rest.
    value = "storable now"
    assert await wf.store.get_step("unsupported-1", "before") == (True, 1)
    assert await flow(1) == "done"
    assert counts["before"] == 1
    assert attempts == 2


async def test_workflow_with_non_json_arguments_still_runs(wf: Workflow) -> None:
    marker = object()

    @wf.workflow(id="r")
    async def flow(thing: object) -> str:
        return "ran"

    assert await flow(marker) == "ran"
    record = await wf.get_run("r")
    assert record is not None
    assert record.status == "completed"
    assert record.inputs is None


async def test_cyclic_task_result_raises_serialization_error(wf: Workflow) -> None:
    @wf.task
    async def produce() -> list[object]:
        cyclic: list[object] = []
        cyclic.append(cyclic)
        return cyclic

    @wf.workflow(id="r")
    async def flow() -> None:
        await produce()

    with pytest.raises(SerializationError, match="produce"):
        await flow()
