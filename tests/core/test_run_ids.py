"""Default run ids are one-to-one on the arguments' JSON form and the same in every process;
``id=`` templates refuse text that holds a memory address."""

import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable import DurableError, IdTemplateError, Workflow
from durable.ids import RunIdTemplate, default_run_id
from durable.serialization import canonical_json, to_json


def run_id(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The default id of ``fn(*args, **kwargs)`` in app ``app``, as flows.py makes it."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return default_run_id("app", fn.__name__, bound, typing.get_type_hints(fn))


def template_id(template: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return RunIdTemplate(template, fn, f"app.{fn.__name__}").format(bound)


async def process(a: int, b: str, c: str = "d") -> None:
    pass


async def nightly() -> None:
    pass


async def transfer(source: str, target: str) -> None:
    pass


async def f(x: Any) -> None:
    pass


async def g(x):  # type: ignore[no-untyped-def]  # unannotated: the same rule as Any
    pass


async def named(x: str) -> None:
    pass


async def maybe(x: str | None, y: Optional[str] = None, z: Annotated[str, "tag"] = "z") -> None:  # noqa: UP045
    pass


async def many(x: int, *args: Any, **kwargs: Any) -> None:
    pass


# -- the seed's format for plain arguments ------------------------------------------------


def test_plain_arguments_keep_the_seed_format() -> None:
    assert run_id(process, 42, "x") == "app-process-42-x-d"
    assert run_id(process, 1, b="y", c="z") == "app-process-1-y-z"
    assert run_id(nightly) == "app-nightly"
    assert run_id(process, 5, "b") == "app-process-5-b-d"
    assert run_id(f, 5) == "app-f-5"
    assert run_id(f, "abc") == "app-f-abc"
    assert run_id(named, "42") == "app-named-42"  # a str parameter: digits are text
    assert run_id(f, "A.b_c:d@e+f=g,h") == "app-f-A.b_c:d@e+f=g,h"  # every safe character


def test_the_workflow_api_keeps_its_pinned_ids(wf: Workflow) -> None:
    @wf.workflow
    async def process(a: int, b: str, c: str = "d") -> None:
        pass

    assert process.run_id_for(42, "x") == "app-process-42-x-d"
    assert process.run_id_for(1, b="y", c="z") == "app-process-1-y-z"


# -- ambiguity -----------------------------------------------------------------------------


def test_a_dash_in_an_argument_cannot_shift_the_parts() -> None:
    assert run_id(transfer, "acct-1", "2") != run_id(transfer, "acct", "1-2")
    assert run_id(many, 1, "a-b") != run_id(many, 1, "a", "b")
    for fn in (f, g, named):
        assert run_id(fn, "a-b") != run_id(fn, "a") != run_id(fn, "b")


def test_an_int_and_its_digits_as_text_differ() -> None:
    for fn in (f, g, named, maybe):
        assert run_id(fn, 1) != run_id(fn, "1")
    assert run_id(f, 1) == "app-f-1"
    assert run_id(f, "1") == "app-f-~%221%22"
    assert run_id(named, "1") == "app-named-1"
    assert run_id(named, 1) == "app-named-~1"


def test_text_that_looks_like_an_encoding_is_encoded_itself() -> None:
    ids = {run_id(f, v) for v in ("~1", "~%221%22", "%7E1", 1, "1", "~true", True, "true")}
    assert len(ids) == 8


@pytest.mark.parametrize(
    ("value", "part"),
    [
        (-3, "~%2D3"),
        (0, "0"),
        (1.5, "~1.5"),
        (1.0, "~1.0"),  # not 1: its JSON form differs
        (-0.0, "~%2D0.0"),
        (float("inf"), "~Infinity"),
        (True, "~true"),
        (False, "~false"),
        (None, "~null"),
        ([1, "a b"], "~%5B1,%22a%20b%22%5D"),
        ((1, "a b"), "~%5B1,%22a%20b%22%5D"),  # a tuple's JSON form is a list's
        ({"b": 1, "a": [None]}, "~%7B%22a%22:%5Bnull%5D,%22b%22:1%7D"),  # keys sorted
        ({"k": {"n": [[]]}}, "~%7B%22k%22:%7B%22n%22:%5B%5B%5D%5D%7D%7D"),
        ("", "~%22%22"),
        ("a-b", "~%22a%2Db%22"),
        ("~", "~%22~%22"),
        ("%", "~%22%25%22"),
        ("a b", "~%22a%20b%22"),
        ("l\nm", "~%22l%5Cnm%22"),
        ("a/b", "~%22a%2Fb%22"),
        ("é", "~%22%C3%A9%22"),
        ("日本", "~%22%E6%97%A5%E6%9C%AC%22"),
        ("٣", "~%22%D9%A3%22"),  # an Arabic digit is not a safe character
        ("\ud800", "~%22%ED%A0%80%22"),  # a lone surrogate still has an id
    ],
)
def test_other_values_are_their_escaped_canonical_json(value: Any, part: str) -> None:
    assert run_id(f, value) == f"app-f-{part}"
    assert run_id(g, value) == f"app-f-{part}".replace("-f-", "-g-")


def test_ids_hold_only_url_safe_ascii_and_never_a_dash_inside_a_part() -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@+=,~%")
    for value in ("a -\t\x00\"'\\/<>?#&*", {"x-y": ["-", -1, -1.5e-10]}, "日本", [None, True]):
        parts = run_id(f, value).split("-")
        assert parts[:2] == ["app", "f"]
        assert len(parts) == 3
        assert set(parts[2]) <= allowed


def test_str_annotations_include_optional_and_annotated() -> None:
    assert run_id(maybe, "42", "7", "8") == "app-maybe-42-7-8"
    assert run_id(maybe, None) == "app-maybe-~null-~null-z"
    assert run_id(maybe, 42) == "app-maybe-~42-~null-z"


def test_var_args_and_kwargs_are_one_part_each() -> None:
    assert run_id(many, 1) == "app-many-1-~%5B%5D-~%7B%7D"
    assert run_id(many, 1, 2, k="v") == "app-many-1-~%5B2%5D-~%7B%22k%22:%22v%22%7D"
    assert run_id(many, 1, k=2, j=1) == run_id(many, 1, j=1, k=2)


def test_defaults_are_applied_without_changing_the_callers_bound_arguments() -> None:
    bound = inspect.signature(process).bind(1, "b")
    assert default_run_id("app", "process", bound, typing.get_type_hints(process)) == (
        "app-process-1-b-d"
    )
    assert "c" not in bound.arguments


def test_without_hints_every_parameter_takes_the_general_rule() -> None:
    bound = inspect.signature(named).bind("42")
    assert default_run_id("app", "named", bound, {}) == "app-named-~%2242%22"
    assert default_run_id("app", "named", bound, {"x": str}) == "app-named-42"


def test_rich_values_take_their_json_form() -> None:
    @dataclasses.dataclass
    class Order:
        id: str
        qty: int

    async def ship(order: Order) -> None:
        pass

    assert run_id(ship, Order("A-1", 2)) == "app-ship-~%7B%22id%22:%22A%2D1%22,%22qty%22:2%7D"
    assert run_id(ship, Order("A-1", 2)) == run_id(ship, {"qty": 2, "id": "A-1"})


# -- one-to-one: hypothesis ---------------------------------------------------------------

TRICKY_TEXT = st.text(alphabet='a1-~%" :,.\n\\é', max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-3, max_value=12)
    | st.floats()
    | st.text()
    | TRICKY_TEXT
    | st.from_regex(r"[0-9]{1,3}", fullmatch=True)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(TRICKY_TEXT | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
ARGS = st.tuples(VALUES, VALUES, VALUES)


async def signature(s: str, n: int, u):  # type: ignore[no-untyped-def]
    pass


def json_form(args: tuple[Any, ...]) -> str:
    return canonical_json(to_json(list(args)))


@st.composite
def pairs(draw: st.DrawFn) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Two calls: the same, unrelated, one argument changed, or made to look alike."""
    first = draw(ARGS)
    choice = draw(st.sampled_from(["same", "other", "one changed", "as text", "dash moved"]))
    second = list(first)
    if choice == "same":
        pass
    elif choice == "other":
        second = list(draw(ARGS))
    elif choice == "one changed":
        second[draw(st.integers(0, 2))] = draw(VALUES)
    elif choice == "as text":  # 1 and "1", None and "None", [1] and "[1]"
        index = draw(st.integers(0, 2))
        second[index] = str(first[index])
    else:  # ("a-1", "2") and ("a", "1-2")
        index = draw(st.integers(0, 1))
        joined = f"{first[index]}-{first[index + 1]}"
        dashes = [i for i, char in enumerate(joined) if char == "-"]
        cut = draw(st.sampled_from(dashes))
        second[index], second[index + 1] = joined[:cut], joined[cut + 1 :]
    return first, tuple(second)


HYPOTHESIS = settings(
    max_examples=int(os.environ.get("DURABLE_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HYPOTHESIS
@given(pairs())
def test_ids_are_equal_exactly_when_the_json_forms_are(
    pair: tuple[tuple[Any, ...], tuple[Any, ...]],
) -> None:
    a, b = pair
    same_id = run_id(signature, *a) == run_id(signature, *b)
    assert same_id == (json_form(a) == json_form(b))


@HYPOTHESIS
@given(st.lists(pairs(), min_size=1, max_size=6))
def test_distinct_json_forms_never_share_an_id(
    calls: list[tuple[tuple[Any, ...], tuple[Any, ...]]],
) -> None:
    by_id: dict[str, str] = {}
    for args in (args for pair in calls for args in pair):
        assert by_id.setdefault(run_id(signature, *args), json_form(args)) == json_form(args)
    assert len(by_id) == len({json_form(args) for pair in calls for args in pair})


@HYPOTHESIS
@given(ARGS)
def test_every_argument_is_one_part_without_a_dash(args: tuple[Any, ...]) -> None:
    parts = run_id(signature, *args).split("-")
    assert parts[:2] == ["app", "signature"]
    assert len(parts) == 5
    assert all(parts[2:])
    assert run_id(signature, *args).isascii()


# -- the same in every process ------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import inspect, typing
    from durable.ids import default_run_id

    async def ship(who: str, n: int, where, *rest, **options) -> None:
        pass

    keys = {"k%d" % i for i in range(24)}  # iteration order depends on PYTHONHASHSEED
    where = {key: [key, -1.5, None] for key in keys}
    bound = inspect.signature(ship).bind(
        "ann-é", 7, where, 1.0, "x y", flag=True, **{key: key for key in keys}
    )
    bound.apply_defaults()
    print(",".join(keys))
    print(default_run_id("app", "ship", bound, typing.get_type_hints(ship)))
    """
)


def test_the_id_of_a_call_is_the_same_in_every_process() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(done.stdout.splitlines())
    (order_1, id_1), (order_2, id_2) = outputs
    assert order_1 != order_2  # the two processes did build their dicts in other orders
    assert id_1 == id_2
    assert id_1.startswith("app-ship-~%22ann%2D%C3%A9%22-7-~%7B%22k0%22:%5B%22k0%22,%2D1.5,null%5D")


# -- arguments without a JSON form ---------------------------------------------------------


class Opaque:
    pass


async def handle(request: Opaque) -> None:
    pass


async def nested(items: list[Any]) -> None:
    pass


def test_an_argument_without_a_json_form_is_an_id_error() -> None:
    with pytest.raises(IdTemplateError) as caught:
        run_id(handle, Opaque())
    message = str(caught.value)
    assert "'app.handle'" in message
    assert "'request'" in message
    assert "Opaque" in message
    assert "id=" in message
    assert ".run(run_id" in message
    assert isinstance(caught.value, DurableError)
    assert isinstance(caught.value, ValueError)


def test_the_error_says_where_inside_the_argument() -> None:
    with pytest.raises(IdTemplateError, match=r"'items'.*\[1\]"):
        run_id(nested, [1, Opaque()])


def test_the_workflow_api_raises_it_too(wf: Workflow) -> None:
    @wf.workflow
    async def handle(request: Opaque) -> None:
        pass

    with pytest.raises(IdTemplateError, match="'request'"):
        handle.run_id_for(Opaque())


# -- templates over objects with a default repr --------------------------------------------


@dataclasses.dataclass
class Order:
    id: str


async def order_flow(order: Any, note: str = "") -> None:
    pass


def test_a_template_over_a_default_repr_is_refused() -> None:
    with pytest.raises(IdTemplateError) as caught:
        template_id("order-{order}", order_flow, Opaque())
    message = str(caught.value)
    assert "'order-{order}'" in message
    assert "'app.order_flow'" in message
    assert "{order}" in message.replace("'order-{order}'", "")
    assert "memory address" in message


def local_function() -> Callable[[], None]:
    def step() -> None:
        pass

    return step


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("o-{order!r}", Opaque()),
        ("o-{order!s:>80}", Opaque()),
        ("o-{order}", [Opaque()]),
        ("o-{order}", local_function()),  # <function local_function.<locals>.step at 0x...>
        ("o-{order}", Opaque),  # a class's repr has none: the next field has
        ("o-{order.method}", type("Thing", (), {"method": lambda self: None})()),
    ],
)
def test_every_way_to_an_address_is_refused(template: str, value: Any) -> None:
    if isinstance(value, type):
        assert template_id(template, order_flow, value) == template.format(order=value)
        with pytest.raises(IdTemplateError, match=r"from \{note\}"):
            template_id(template + "-{note}", order_flow, value, Opaque())
        return
    with pytest.raises(IdTemplateError, match="memory address"):
        template_id(template, order_flow, value)


def test_templates_stay_str_format() -> None:
    assert template_id("order-{order.id}", order_flow, Order("7")) == "order-7"
    assert template_id("o-{order}", order_flow, Order("7")) == "o-Order(id='7')"
    # text given as an argument is the caller's: it is kept even when it looks like a repr
    text = "<x object at 0x7f00>"
    assert template_id("o-{order}", order_flow, text) == f"o-{text}"
    assert template_id("o-{order!r}-{note}", order_flow, text, text) == f"o-{text!r}-{text}"
    # so is the template's own text, and an int formatted into it
    assert template_id("<x at 0x{order:x}>", order_flow, 255) == "<x at 0xff>"


@pytest.mark.parametrize("db", ["memory://", "sqlite"])
async def test_a_run_id_no_store_can_write_is_refused_before_anything_runs(
    db: str, tmp_path: Path
) -> None:
    # A lone surrogate: memory took it, SQLite raised a raw UnicodeEncodeError.
    wf = Workflow("app", db=str(tmp_path / "x.db") if db == "sqlite" else db)
    ran: list[str] = []

    @wf.workflow()
    async def flow() -> int:
        ran.append("body")
        return 1

    with pytest.raises(DurableError, match="lone surrogate"):
        await flow.run("run-\ud800")
    with pytest.raises(DurableError, match="a run id is a str"):
        await flow.run(42)  # type: ignore[arg-type]
    assert ran == []
    assert await flow.run("run-ü") == 1  # any other text is fine
    await wf.close()
