"""Property-based tests (hypothesis): any JSON payload round-trips exactly through a task
checkpoint, a run's inputs and result, and a signal, on memory and SQLite; arbitrary run
and step ids store and replay; id templates give what ``str.format`` gives.

"Exactly" means same types (``1`` is not ``1.0`` or ``True``), same float signs
(``-0.0``), same keys: :func:`same` compares that way.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from durable import InMemoryStore, Store, Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore

from .harness import SEED_ENV

KINDS = ["memory", "sqlite"]
_counter = itertools.count()
_dir = Path(tempfile.mkdtemp(prefix="durable-properties-"))
atexit.register(shutil.rmtree, _dir, True)

SETTINGS = settings(
    max_examples=int(os.environ.get("DURABLE_HYPOTHESIS_EXAMPLES", "100")),
    deadline=None,
    database=None,  # nothing written to the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def seeded(test: Callable[..., Any]) -> Callable[..., Any]:
    """Use $DURABLE_RELIABILITY_SEED as hypothesis's seed when it is set."""
    text = os.environ.get(SEED_ENV)
    return seed(int(text))(test) if text else test


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def stores(kind: str) -> Callable[[], Store]:
    """A new store each call over one set of data (a new SQLiteStore: a new process)."""
    if kind == "memory":
        store = InMemoryStore()
        return lambda: store
    path = _dir / f"p{next(_counter)}.db"
    return lambda: SQLiteStore(path)


# -- payloads ----------------------------------------------------------------------------

EDGES = st.sampled_from(
    [None, False, True, 0, -0.0, 0.0, "", [], {}, 1e308, -5e-324, 2**63, -(2**63) - 1,
     10**40, float("inf"), float("-inf"), "\x00", "é", "😀", '"quotes" and \\ slashes']
)  # fmt: skip
SCALARS = st.one_of(
    EDGES,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),  # no surrogates
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=40,
)


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = st.builds(nested, st.integers(50, 400), SCALARS)
LARGE = st.builds(
    lambda n, text, count: {"blob": text * n, "items": list(range(count))},
    st.integers(10_000, 200_000),
    st.text(min_size=1, max_size=3),
    st.integers(0, 20_000),
)
PAYLOADS = st.one_of(JSON, DEEP, LARGE)


async def payload_roundtrip(kind: str, payload: Any) -> None:
    source = stores(kind)
    bodies: Counter[str] = Counter()
    rid = f"payload-{next(_counter)}"
    crash = {"now": True}

    def make() -> tuple[Workflow, Any]:
        wf = Workflow("prop", db=source(), default_backoff=constant(0), default_retries=0)

        @wf.task
        async def echo(value: Any) -> Any:
            bodies["echo"] += 1
            return value

        @wf.workflow
        async def flow(value: Any) -> Any:
            got = await echo(value)
            if crash["now"]:  # not an argument: a resume is the same call
                raise RuntimeError("fail after the checkpoint")
            signal = await wf.signal("data", poll=0.01)
            return {"step": got, "signal": signal}

        return wf, flow

    wf, flow = make()
    async with wf:
        with pytest.raises(RuntimeError):
            await flow.run(rid, payload)
        assert await wf.complete(rid, "data", payload) is True
        assert await wf.complete(rid, "data", "second") is False
    # A new store object (for SQLite: another process) resumes the failed run: the step
    # replays from its checkpoint, the signal from the store.
    crash["now"] = False
    again, flow2 = make()
    async with again:
        result = await flow2.run(rid, payload)
        record = await again.get_run(rid)
        # A completed run: the recorded result, the body not run.
        replayed = await flow2.run(rid, payload)
    assert bodies["echo"] == 1
    assert same(result, {"step": payload, "signal": payload}), (result, payload)
    assert same(replayed, result)
    assert record is not None
    assert same(record.result, result)
    assert same(record.inputs, {"value": payload})
    assert [s.step_id for s in record.steps] == ["echo"]
    assert same(record.steps[0].value, payload)
    assert [(s.name, same(s.payload, payload)) for s in record.signals] == [("data", True)]


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@seeded
@given(payload=PAYLOADS)
def test_any_json_payload_round_trips_through_checkpoints_and_signals(
    kind: str, payload: Any
) -> None:
    asyncio.run(payload_roundtrip(kind, payload))


# -- run ids and step ids ------------------------------------------------------------------

IDS = (st.text(min_size=1, max_size=40) | st.sampled_from(
    ["a b", "a/b", "../x", "'quoted'", '"double"', "back\\slash", "100%", "?&=#", " ", "\t\n",
     "NULL", "; DROP TABLE steps; --", "步骤", "x" * 300]
)).filter(lambda text: "\x00" not in text)  # fmt: skip
# (A NUL is refused in every id, before anything runs: tests/core/test_storable_text.py.)


NO_NUL = st.text().filter(lambda text: "\x00" not in text)

# Step ids starting with "$" are the engine's (reserved): test_step_id_conflicts.py.
STEP_IDS = (IDS | st.just("")).filter(lambda sid: not sid.startswith("$"))


async def ids_roundtrip(kind: str, run_id: str, step_ids: list[str]) -> None:
    source = stores(kind)
    bodies: Counter[str] = Counter()
    crash = {"now": True}

    def make() -> tuple[Workflow, Any]:
        wf = Workflow("ids", db=source(), default_backoff=constant(0), default_retries=0)

        @wf.task
        async def record(i: int) -> int:
            bodies[step_ids[i]] += 1
            return i * 10

        @wf.workflow
        async def flow() -> list[int]:
            out = [await record(i, step_id=sid) for i, sid in enumerate(step_ids)]
            if crash["now"]:
                raise RuntimeError("fail after every step")
            return out

        return wf, flow

    wf, flow = make()
    async with wf:
        with pytest.raises(RuntimeError):
            await flow.run(run_id)
    crash["now"] = False
    again, flow2 = make()
    async with again:
        assert await flow2.run(run_id) == [i * 10 for i in range(len(step_ids))]
        run = await again.get_run(run_id)
        listed = {r.run_id for r in await again.list_runs(limit=1000)}
    assert bodies == Counter(step_ids)  # each ran once: the second call replayed them all
    assert run is not None
    assert run.run_id == run_id
    assert run.status == "completed"
    assert {s.step_id: s.value for s in run.steps} == {s: i * 10 for i, s in enumerate(step_ids)}
    assert run_id in listed


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@seeded
@given(run_id=IDS, step_ids=st.lists(STEP_IDS, min_size=1, max_size=5, unique=True))
def test_any_run_id_and_step_ids_store_and_replay(
    kind: str, run_id: str, step_ids: list[str]
) -> None:
    asyncio.run(ids_roundtrip(kind, run_id, step_ids))


# -- id templates -----------------------------------------------------------------------------

TEMPLATE = "order-{a}/{b}:{a!r}|{b:>6}|{c}"


async def template_roundtrip(kind: str, a: str, b: int, c: Any) -> None:
    source = stores(kind)
    bodies: Counter[str] = Counter()
    wf = Workflow("tpl", db=source(), default_backoff=constant(0))

    @wf.task
    async def step(a: str, b: int) -> str:
        bodies["step"] += 1
        return f"{len(a)}:{b}"

    @wf.workflow(id=TEMPLATE)
    async def flow(a: str, b: int, c: Any) -> str:
        bodies["body"] += 1
        return await step(a, b)

    expected_id = TEMPLATE.format(a=a, b=b, c=c)
    async with wf:
        assert flow.run_id_for(a, b, c) == expected_id
        assert flow.run_id_for(a=a, b=b, c=c) == expected_id
        first = await flow(a, b, c)
        second = await flow(a=a, b=b, c=c)  # the same run: its recorded result
        record = await wf.get_run(expected_id)
    assert first == second == f"{len(a)}:{b}"
    assert bodies == {"body": 1, "step": 1}
    assert record is not None
    assert record.status == "completed"


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@seeded
@given(a=NO_NUL, b=st.integers(), c=NO_NUL | st.integers())
def test_id_templates_give_str_format_and_replay_the_run(kind: str, a: str, b: int, c: Any) -> None:
    asyncio.run(template_roundtrip(kind, a, b, c))
