"""The SQLite store's cheaper paths write and answer exactly what the longer ones did.

- ``durable_sqlite.jsontext``: the text ``json.dumps`` writes, the value ``json.loads``
  reads (or its error);
- a checkpoint by the run's owner with nothing else to do is one statement; with a
  cancellation to report, take-overs to clear or another owner on record it goes the
  long way, in the same transaction, on either connection;
- a claim that creates a run returns the record a read gives.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable.errors import LeaseLostError
from durable_sqlite import SQLiteStore
from durable_sqlite.jsontext import dumps, loads

LIVE = 60.0

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included, as json.dumps writes them
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _outcome(function: Any, argument: Any) -> tuple[str, Any]:
    try:
        return "value", repr(function(argument))
    except Exception as exc:
        return "error", (type(exc), str(exc))


@given(json_values)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == json.dumps(value)


@given(json_values)
def test_loads_reads_what_json_loads_reads(value: Any) -> None:
    text = json.dumps(value)
    assert repr(loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "[1,", '{"a": 1}x', "\ufeff1", "NaN", "-Infinity", '"\\u00e9"', "nul"]
)
def test_loads_takes_odd_text_as_json_loads_does(text: str) -> None:
    assert _outcome(loads, text) == _outcome(json.loads, text)


def test_dumps_refuses_what_json_dumps_refuses() -> None:
    for value in (object(), {(1, 2): 3}, [{1, 2}]):
        assert _outcome(dumps, value) == _outcome(json.dumps, value)
    assert dumps(math.inf) == "Infinity"


# -- checkpoints --------------------------------------------------------------------------


@pytest.fixture(params=["normal", "full"])  # the loop's connection, the patient one
async def store(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[SQLiteStore]:
    durability: Literal["normal", "full"] = request.param
    store = SQLiteStore(db_path, durability=durability)
    await store.setup()
    try:
        yield store
    finally:
        await store.close()


def _steps(db_path: Path, run_id: str) -> dict[str, Any]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT step_id, result FROM steps WHERE run_id = ?", (run_id,))
        return {step_id: json.loads(result) for step_id, result in rows}


def _counts(db_path: Path, run_id: str) -> tuple[int, int]:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT cancel_requested, recoveries_without_progress FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        return row[0], row[1]


async def test_the_owners_checkpoint_is_one_statement(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.claim_run("r", "wf", {}, owner="a", lease_seconds=LIVE)
        statements: list[str] = []
        store._db.fast.set_trace_callback(statements.append)
        assert await store.checkpoint_step("r", "s", {"i": 1}, owner="a")
        assert await store.checkpoint_step("r", "s", {"i": 2}, 2, owner="a")  # again: updated
        store._db.fast.set_trace_callback(None)
    finally:
        await store.close()
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "COMMIT"] * 2
    assert _steps(db_path, "r") == {"s": {"i": 2}}


async def test_a_checkpoint_still_reports_a_cancellation(store: SQLiteStore, db_path: Path) -> None:
    await store.claim_run("r", "wf", {}, owner="a", lease_seconds=LIVE)
    await store.request_cancel("r")
    assert not await store.checkpoint_step("r", "s", 1, owner="a")  # saved, and: stop
    assert _steps(db_path, "r") == {"s": 1}
    assert _counts(db_path, "r") == (1, 0)


async def test_a_checkpoint_still_clears_takeovers(store: SQLiteStore, db_path: Path) -> None:
    await store.claim_run("r", "wf", {}, owner="a", lease_seconds=0.0)
    await store.claim_run("r", "wf", {}, owner="b", lease_seconds=LIVE)  # a take-over
    assert _counts(db_path, "r") == (0, 1)
    assert await store.checkpoint_step("r", "s", 1, owner="b")
    assert _counts(db_path, "r") == (0, 0)
    assert _steps(db_path, "r") == {"s": 1}


async def test_a_stale_owners_checkpoint_writes_nothing(store: SQLiteStore, db_path: Path) -> None:
    await store.claim_run("r", "wf", {}, owner="a", lease_seconds=0.0)
    await store.claim_run("r", "wf", {}, owner="b", lease_seconds=LIVE)
    with pytest.raises(LeaseLostError):
        await store.checkpoint_step("r", "s", 1, owner="a")
    with pytest.raises(LeaseLostError):
        await store.checkpoint_step("no-such-run", "s", 1, owner="a")
    assert _steps(db_path, "r") == {}
    assert await store.checkpoint_step("r", "s", 2)  # unfenced: the seed's way, always
    assert _steps(db_path, "r") == {"s": 2}


# -- claims ---------------------------------------------------------------------------------


async def test_a_new_runs_claim_returns_the_stored_record(store: SQLiteStore) -> None:
    inputs = {"n": [1, 2.5, None], "t": "é"}
    claim = await store.claim_run(
        "r", "wf", inputs, owner="a", lease_seconds=LIVE, input_digest="d" * 32
    )
    assert claim.acquired
    assert claim.created
    assert claim.record == await store.get_run("r")
    assert claim.record.inputs is not inputs  # a copy, like any record read back
    again = await store.claim_run("r", "wf", inputs, owner="a", lease_seconds=LIVE)
    assert again.acquired
    assert not again.created
