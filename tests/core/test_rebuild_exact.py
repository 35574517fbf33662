"""A replayed result is the type that was returned (issue "Identity", class 6).

Unions rebuild the member that was returned, dict keys that would collide as JSON text
are refused, sets are stored in one order in every process, and :func:`lossy_note`
says when an annotation cannot bring a value's type back.
"""

import dataclasses
import datetime as dt
import enum
import json
import os
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from typing import Annotated, Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable import SerializationError, Workflow
from durable.serialization import (
    Unserializable,
    canonical_json,
    encoder,
    from_json,
    lossy_note,
    to_json,
)

pydantic = pytest.importorskip("pydantic", minversion="2")


class Receipt(pydantic.BaseModel):
    number: str
    total: Decimal


class Refund(pydantic.BaseModel):  # the same JSON shape as a Receipt
    number: str
    total: Decimal


@dataclasses.dataclass
class Parcel:
    weight: int


@dataclasses.dataclass
class Letter:  # the same JSON shape as a Parcel
    weight: int


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Shipment:
    ref: str | uuid.UUID
    lines: list[int | Receipt]
    when: Optional[dt.date | dt.datetime] = None  # noqa: UP045 - the old spelling too


@dataclasses.dataclass
class Holder:
    x: Any


U1 = uuid.UUID(int=1)
RECEIPT = Receipt(number="R-1", total=Decimal("9.90"))
REFUND = Refund(number="R-1", total=Decimal("9.90"))
WHEN = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


def stored(value: Any, annotation: Any) -> Any:
    """What a store gives back after the engine stored ``value`` of ``annotation``."""
    return json.loads(json.dumps(encoder(annotation)(value)))


def shape(value: Any) -> Any:
    """``value`` with the type of every part spelled out, for comparing exactly."""
    if isinstance(value, dict):
        return (dict, frozenset((type(k), k, shape(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value), tuple(shape(v) for v in value))
    if isinstance(value, set | frozenset):
        return (type(value), frozenset(shape(v) for v in value))
    return (type(value), repr(value))


# -- 1. unions rebuild the member that was returned --------------------------------------


UNIONS: list[tuple[Any, Any]] = [
    # JSON kinds tell the members apart: no discriminator is stored
    (RECEIPT, int | Receipt),
    (Parcel(3), int | Parcel),
    (WHEN, int | dt.datetime),
    ({"a": 1, "b": RECEIPT}, dict[str, int | Receipt]),
    (Shipment("S-1", [1, RECEIPT]), Shipment),
    (RECEIPT, Annotated[int | Receipt, "meta"]),
    # JSON cannot tell: a discriminator names the member
    (U1, str | uuid.UUID),
    (WHEN, str | dt.datetime),
    (dt.date(2024, 1, 1), dt.datetime | dt.date),
    (Decimal("1.5"), str | Decimal),
    (Color.RED, str | Color),
    (Level.HIGH, int | Level),
    (REFUND, Receipt | Refund),
    (Letter(1), Parcel | Letter),
    ((1, 2), list[int] | tuple[int, ...]),
    ({1, 2}, list[int] | set[int]),
    (frozenset({"a"}), set[str] | frozenset[str]),
    (Parcel(1), dict[str, int] | Parcel),
    ([dt.date(2024, 1, 1)], list[str] | list[dt.date]),
    ([U1, "x"], list[str | uuid.UUID]),
    ({"k": U1}, dict[str, str | uuid.UUID]),
    ((U1, "x"), tuple[str | uuid.UUID, str | uuid.UUID]),
    ({U1, Decimal("2")}, set[Decimal | uuid.UUID]),
    (U1, Optional[str | uuid.UUID]),  # noqa: UP045
    (Shipment(U1, [RECEIPT], WHEN), Shipment),
    (Shipment(U1, [], dt.date(2024, 1, 1)), Shipment),
]


@pytest.mark.parametrize(("value", "annotation"), UNIONS)
def test_a_union_rebuilds_the_member_that_was_returned(value: Any, annotation: Any) -> None:
    rebuilt = from_json(stored(value, annotation), annotation)
    assert rebuilt == value
    assert shape(rebuilt) == shape(value)
    if dataclasses.is_dataclass(value):
        assert shape(dataclasses.asdict(rebuilt)) == shape(dataclasses.asdict(value))


@pytest.mark.parametrize(
    ("value", "annotation"),
    [  # values that came back right before: they must still
        ("plain", str | uuid.UUID),
        (7, int | Receipt),
        (5, int | dt.datetime),
        ("2024-05-01T12:30:00", str | dt.datetime),
        ("1.5", str | Decimal),
        (1, int | Level),
        (True, int | bool),
        (1, int | bool),
        (1.0, int | float),
        (None, int | None),
        ({"weight": 1}, dict[str, int] | Parcel),
        ([1, 2], list[int] | tuple[int, ...]),
        (RECEIPT, Receipt | Refund),
        (None, Optional[str | uuid.UUID]),  # noqa: UP045
    ],
)
def test_other_members_still_round_trip(value: Any, annotation: Any) -> None:
    rebuilt = from_json(stored(value, annotation), annotation)
    assert shape(rebuilt) == shape(value)


def test_the_discriminator_names_the_member_by_its_qualified_name() -> None:
    assert encoder(str | uuid.UUID)(U1) == {"$durable:member": "UUID", "value": str(U1)}
    assert encoder(str | uuid.UUID)("x") == {"$durable:member": "str", "value": "x"}
    assert encoder(Receipt | Refund)(REFUND) == {
        "$durable:member": "Refund",
        "value": {"number": "R-1", "total": "9.90"},
    }
    assert encoder(list[int] | tuple[int, ...])((1,)) == {"$durable:member": "tuple", "value": [1]}


def test_reordered_and_widened_unions_still_decode() -> None:
    assert from_json(stored(U1, str | uuid.UUID), uuid.UUID | str) == U1
    assert type(from_json(stored(REFUND, Receipt | Refund), Refund | int | Receipt)) is Refund
    assert from_json(stored("x", str | uuid.UUID), uuid.UUID | int | str | None) == "x"


def _box(module: str) -> type[Any]:
    box = dataclasses.make_dataclass("Box", [("n", int)])
    box.__module__ = module
    return box


def test_members_sharing_a_name_are_told_apart_by_their_module() -> None:
    first, second = _box("shop.a"), _box("shop.b")
    annotation = first | second
    data = stored(second(2), annotation)
    assert data == {"$durable:member": "shop.b.Box", "value": {"n": 2}}
    assert type(from_json(data, annotation)) is second
    assert type(from_json(stored(first(1), annotation), annotation)) is first


def test_data_stored_without_a_discriminator_decodes_as_before() -> None:
    """What earlier versions stored (plain data) comes back as earlier versions gave it."""
    assert from_json("abc", str | uuid.UUID) == "abc"
    assert from_json(str(U1), str | uuid.UUID) == str(U1)  # a str member takes a str
    assert from_json(str(U1), uuid.UUID | int) == U1
    assert type(from_json({"number": "1", "total": "2"}, Receipt | Refund)) is Receipt
    assert from_json([1, 2], list[int] | tuple[int, ...]) == [1, 2]
    assert type(from_json(1, int | Level)) is int
    assert from_json({"x": 1}, Receipt | Refund) == {"x": 1}  # neither accepts it


def test_an_int_member_does_not_swallow_the_data_of_another_kind() -> None:
    """Data earlier versions stored for ``-> int | Receipt`` now rebuilds the Receipt."""
    assert type(from_json({"number": "1", "total": "2"}, int | Receipt)) is Receipt
    assert from_json(str(U1), int | uuid.UUID) == U1
    assert type(from_json({"weight": 1}, int | Parcel)) is Parcel


def test_an_annotation_without_an_ambiguous_union_is_encoded_by_to_json_itself() -> None:
    for annotation in (
        Any,
        None,
        int,
        Receipt,
        Parcel | None,
        dict[str, Any],
        int | Receipt,
        str | int | None,
        list[int | Receipt],
        Optional[uuid.UUID],  # noqa: UP045
        "Forward",
    ):
        assert encoder(annotation) is to_json, annotation
    assert encoder(Shipment) is not to_json  # its ref field is str | UUID
    assert encoder(str | uuid.UUID) is encoder(str | uuid.UUID)  # built once


def test_a_value_of_no_member_is_stored_plainly() -> None:
    assert encoder(Receipt | Refund)({"x": 1}) == {"x": 1}
    assert encoder(str | uuid.UUID)(3) == 3
    assert from_json(stored({"x": 1}, Receipt | Refund), Receipt | Refund) == {"x": 1}


def test_user_data_shaped_like_a_discriminator_is_not_mistaken_for_one() -> None:
    lookalike = {"$durable:member": "Receipt", "value": {"number": "1", "total": "2"}}
    for annotation in (dict[str, Any] | Receipt, Receipt | Refund, int | dict[str, Any]):
        assert from_json(stored(lookalike, annotation), annotation) == lookalike


def test_a_discriminator_picks_only_among_the_annotated_members() -> None:
    data = {"$durable:member": "Refund", "value": {"number": "1", "total": "2"}}
    assert type(from_json(data, Receipt | Parcel)) is Receipt  # never a Refund
    assert from_json({"$durable:member": "Gone", "value": "abc"}, str | uuid.UUID) == "abc"


def test_the_encoder_refuses_what_to_json_refuses_and_says_where() -> None:
    value = ["a", object()]
    with pytest.raises(Unserializable) as info:
        encoder(list[str | uuid.UUID])(value)
    assert info.value.path == "[1]"
    assert str(info.value) == "builtins.object at [1] has no JSON form"
    with pytest.raises(Unserializable, match=r"\.ref"):
        encoder(Shipment)(Shipment(object(), []))  # type: ignore[arg-type]
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(Unserializable, match="reference cycle"):
        encoder(list[Any] | tuple[Any, ...])(cyclic)


@dataclasses.dataclass
class Node:
    name: str | uuid.UUID
    children: "list[Node]"


def test_a_recursive_dataclass_round_trips() -> None:
    tree = Node("root", [Node(U1, []), Node("leaf", [])])
    assert from_json(stored(tree, Node), Node) == tree
    assert type(from_json(stored(tree, Node), Node).children[0].name) is uuid.UUID


class Crash(Exception):
    pass


async def test_a_replayed_task_rebuilds_the_member_it_returned(wf: Workflow) -> None:
    seen: list[Any] = []

    @wf.task
    async def charge() -> int | Receipt:
        return RECEIPT

    @wf.workflow(id="r")
    async def flow() -> None:
        seen.append(await charge())
        if len(seen) == 1:
            raise Crash  # after the checkpoint: the next call replays it

    with pytest.raises(Crash):
        await flow()
    await flow()
    assert [type(x) for x in seen] == [Receipt, Receipt]


# -- 2. dict keys that collide as JSON text ----------------------------------------------


class One(enum.Enum):
    ONE = 1


class OneText(enum.Enum):
    ONE = "1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a", "1": "b"}, "keys 1 and '1' both become '1'"),
        ({One.ONE: "a", OneText.ONE: "b"}, "keys One.ONE and OneText.ONE both become '1'"),
        ({One.ONE: "a", 1: "b"}, "keys One.ONE and 1 both become '1'"),
        ({U1: 1, str(U1): 2}, f"keys {U1!r} and '{U1}' both become '{U1}'"),
    ],
)
def test_keys_that_collide_as_text_are_refused(value: Any, message: str) -> None:
    with pytest.raises(Unserializable) as info:
        to_json(value)
    assert message in str(info.value)
    assert info.value.type_name == "builtins.dict"


def test_a_collision_says_where_the_dict_is() -> None:
    with pytest.raises(Unserializable) as info:
        to_json({"outer": [{1: "a", "1": "b"}]})
    assert info.value.path == "['outer'][0] (keys 1 and '1' both become '1')"
    with pytest.raises(Unserializable, match="both become"):
        encoder(dict[Any, str | uuid.UUID])({1: "a", "1": "b"})


def test_keys_that_do_not_collide_are_kept() -> None:
    assert to_json({1: "a", 2: "b", "3": "c"}) == {"1": "a", "2": "b", "3": "c"}
    assert to_json({One.ONE: "a", "2": "b"}) == {"1": "a", "2": "b"}


async def test_a_task_returning_colliding_keys_fails_naming_the_task(wf: Workflow) -> None:
    @wf.task
    async def tally() -> dict[Any, str]:
        return {1: "a", "1": "b"}

    @wf.workflow(id="r")
    async def flow() -> None:
        await tally()

    with pytest.raises(SerializationError) as info:
        await flow()
    assert "tally" in str(info.value)
    assert "both become '1'" in str(info.value)


# -- 3. sets in one order ----------------------------------------------------------------


def test_equal_sets_give_equal_data() -> None:
    assert to_json({8, 16}) == to_json({16, 8})  # same hash slot: insertion order differs
    assert to_json({"b", "c", "a"}) == ["a", "b", "c"]
    assert to_json(frozenset({1, "1", None, 2.5, (1, 2)})) == ["1", 1, 2.5, [1, 2], None]
    assert to_json({"s": {16, 8}}) == to_json({"s": {8, 16}})
    assert encoder(set[str | uuid.UUID])({U1, "a"}) == encoder(set[str | uuid.UUID])({"a", U1})


SET_SCRIPT = textwrap.dedent(
    """
    from durable.serialization import canonical_json, to_json
    words = {"w%d" % i for i in range(32)}  # iteration order depends on PYTHONHASHSEED
    print(",".join(words))
    print(canonical_json(to_json({"tags": frozenset(words), "n": {8, 16}})))
    """
)


def test_a_set_is_stored_the_same_in_every_process() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SET_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(done.stdout.splitlines())
    (order_1, data_1), (order_2, data_2) = outputs
    assert order_1 != order_2  # the two processes did iterate their sets in other orders
    assert data_1 == data_2
    words = {f"w{i}" for i in range(32)}
    assert data_1 == canonical_json(to_json({"tags": frozenset(words), "n": {8, 16}}))


# -- 4. lossy_note -----------------------------------------------------------------------


OPEN = "does not say otherwise"
LOSSY: list[tuple[Any, Any, str]] = [
    ((1, 2), Any, f"returned a tuple, which replays as a list: its annotation (Any) {OPEN}"),
    ({1, 2}, Any, "returned a set, which replays as a list"),
    (WHEN, Any, "returned a datetime, which replays as a str"),
    (U1, object, f"returned a UUID, which replays as a str: its annotation (object) {OPEN}"),
    (RECEIPT, Any, "returned a Receipt, which replays as a dict"),
    (Parcel(1), Any, "returned a Parcel, which replays as a dict"),
    (Decimal("1"), Any, "returned a Decimal, which replays as a str"),
    (Color.RED, Any, "returned a Color, which replays as a str"),
    (Level.LOW, int, "returned a Level, which replays as an int: its annotation (int)"),
    ((1, 2), list[int], "returned a tuple, which replays as a list: its annotation is list[int]"),
    (
        {1: "a"},
        dict,
        f"returned a dict with int keys, which replay as str keys: its annotation (dict) {OPEN}",
    ),
    ({1: "a"}, dict[Any, str], "with int keys, which replay as str keys"),
    ([(1, 2)], list, "returned a list holding a tuple, which replays as a list"),
    ({"at": WHEN}, dict[str, Any], "returned a dict holding a datetime, which replays as a str"),
    (
        Holder((1, 2)),
        Holder,
        "returned a Holder whose field 'x' holds a tuple, which replays as a list: "
        f"the field's annotation (Any) {OPEN}",
    ),
    (
        {"x": 1},
        Receipt | Refund,
        "returned a dict, which is none of the members of its annotation (Receipt | Refund)",
    ),
]


@pytest.mark.parametrize(("value", "annotation", "note"), LOSSY)
def test_lossy_note_says_what_will_come_back_as_another_type(
    value: Any, annotation: Any, note: str
) -> None:
    found = lossy_note(value, annotation)
    assert found is not None
    assert note in found


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        (None, Any),
        (1, Any),
        ("a", Any),
        (2, float),
        ([1, "a", None, {"k": [1.5]}], Any),
        ({"a": 1}, dict[str, Any]),
        ((1, "a"), tuple[int, str]),
        ({1: "a"}, dict[int, str]),
        ({Level.LOW: "a"}, dict[Level, str]),
        ({U1, U1}, set[uuid.UUID]),
        (RECEIPT, Receipt),
        (RECEIPT, int | Receipt),
        (U1, str | uuid.UUID),
        ([U1, "a"], list[str | uuid.UUID]),
        (Shipment(U1, [RECEIPT], WHEN), Shipment),
        (Holder([1]), Holder),
    ],
)
def test_lossy_note_is_none_for_values_that_round_trip(value: Any, annotation: Any) -> None:
    assert lossy_note(value, annotation) is None
    assert shape(from_json(stored(value, annotation), annotation)) == shape(value)


# -- 5. the property: encoded, stored as text, decoded: the same value and types ---------

TEXT = st.text(max_size=40)
MONEY = st.decimals(places=2, allow_nan=False, allow_infinity=False)
RECEIPTS = st.builds(Receipt, number=TEXT, total=MONEY)
REFUNDS = st.builds(Refund, number=TEXT, total=MONEY)
PARCELS = st.builds(Parcel, weight=st.integers())
LETTERS = st.builds(Letter, weight=st.integers())
# ISO text keeps no ``fold`` (equal values, but a different repr): draw fold=0 only
DATETIMES = st.datetimes(timezones=st.none() | st.just(dt.UTC)).map(lambda d: d.replace(fold=0))
TIMES = st.times().map(lambda t: t.replace(fold=0))
INTS = st.lists(st.integers(), max_size=5)

SHIPMENTS = st.builds(
    Shipment,
    ref=TEXT | st.uuids(),
    lines=st.lists(st.integers() | RECEIPTS, max_size=4),
    when=st.none() | st.dates() | DATETIMES,
)
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
NUMBERS = st.integers() | st.sampled_from(Level) | st.booleans() | st.floats(allow_nan=False)

PROPERTY_CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (str | uuid.UUID, TEXT | st.uuids()),
    (int | Receipt, st.integers() | RECEIPTS),
    (Receipt | Refund | None, RECEIPTS | REFUNDS | st.none()),
    (Parcel | Letter | dict[str, int], PARCELS | LETTERS | st.dictionaries(TEXT, st.integers())),
    (str | dt.datetime | dt.date | dt.time, TEXT | DATETIMES | st.dates() | TIMES),
    (str | Decimal | Color, TEXT | DECIMALS | st.sampled_from(Color)),
    (int | Level | bool | float, NUMBERS),
    (list[int] | tuple[int, ...] | set[int], INTS | INTS.map(tuple) | st.sets(st.integers())),
    (list[str | uuid.UUID], st.lists(TEXT | st.uuids())),
    (dict[str, int | Receipt | Refund], st.dictionaries(TEXT, st.integers() | RECEIPTS | REFUNDS)),
    (set[str | uuid.UUID], st.sets(TEXT | st.uuids())),
    (Shipment, SHIPMENTS),
]
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize(("annotation", "values"), PROPERTY_CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_every_value_of_a_union_comes_back_exactly(
    annotation: Any, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values)
    rebuilt = from_json(json.loads(json.dumps(encoder(annotation)(value))), annotation)
    assert rebuilt == value
    assert type(rebuilt) is type(value)
    assert shape(rebuilt) == shape(value)


# -- through the engine: a replay returns what the first run returned --------------------------


async def test_a_replayed_union_step_and_result_come_back_as_the_member_returned(
    make_wf,
) -> None:
    import uuid as uuid_module

    from durable import Workflow

    token = uuid_module.UUID("12345678-1234-5678-1234-567812345678")
    first: dict[str, Any] = {}
    crash = {"now": True}

    def app() -> tuple[Workflow, Any]:
        wf = make_wf()

        @wf.task
        async def issue() -> str | uuid_module.UUID:
            return token

        @wf.task
        async def label() -> str | uuid_module.UUID:
            return str(token)

        @wf.workflow(id="r", name="flow")
        async def flow() -> list[str | uuid_module.UUID]:
            out = [await issue(), await label()]
            if crash["now"]:
                first["out"] = out
                raise RuntimeError("crash")
            return out

        return wf, flow

    _, flow = app()
    with pytest.raises(RuntimeError):
        await flow()
    crash["now"] = False
    _, flow2 = app()
    resumed = await flow2()  # both steps replayed
    assert resumed == first["out"]
    assert [type(x) for x in resumed] == [uuid_module.UUID, str]
    _, flow3 = app()
    recorded = await flow3()  # the completed run's recorded result
    assert [type(x) for x in recorded] == [uuid_module.UUID, str]
