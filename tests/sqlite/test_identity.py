"""A run id on record is one workflow's, called with one set of inputs (schema version 3).

``claim_run`` refuses, changing nothing, a claim from another workflow or with another
input digest (a digest missing on either side is not compared); a new record keeps the
caller's digest, and a record without one (the runs of version 2 files) keeps none,
which tells the engine that the run's engine step ids may be in the old form.
"""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from durable import StoreError, Workflow
from durable.backoff import constant
from durable.errors import RunConflictError
from durable.store import RunClaim
from durable_sqlite import SQLiteStore
from durable_sqlite.schema import SCHEMA_VERSION

Raw = Callable[..., sqlite3.Connection]

FLOW = "app.flow"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        yield store
    finally:
        await store.close()


def raw_run(conn: sqlite3.Connection, run_id: str) -> tuple[Any, ...]:
    """The run's row exactly as stored, every column."""
    row: tuple[Any, ...] | None = conn.execute(
        "SELECT * FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    assert row is not None
    return row


async def claim(store: SQLiteStore, run_id: str, owner: str, **kwargs: Any) -> RunClaim:
    workflow = kwargs.pop("workflow", FLOW)
    lease = kwargs.pop("lease_seconds", 30.0)
    return await store.claim_run(
        run_id, workflow, {"n": 1}, owner=owner, lease_seconds=lease, **kwargs
    )


async def record_run(store: SQLiteStore, state: str, *, digest: str | None = "d1") -> None:
    """Run "r" of FLOW, recorded with ``digest``, in a state where "o2" may claim it."""
    kwargs: dict[str, Any] = {} if digest is None else {"input_digest": digest}
    if state == "failed":
        assert (await claim(store, "r", "o1", **kwargs)).created
        await store.finish_run("r", "o1", "failed", error="ValueError: boom")
    elif state == "expired":  # o1's lease ran out: o2 would take it over
        assert (await claim(store, "r", "o1", lease_seconds=-1.0, **kwargs)).created
    else:  # "own": o2 holds it already, and would renew its lease
        assert (await claim(store, "r", "o2", **kwargs)).created


STATES = ["failed", "expired", "own"]


# -- refused claims change nothing --------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
async def test_claim_for_another_workflow_is_refused_and_changes_nothing(
    store: SQLiteStore, db_path: Path, raw: Raw, state: str
) -> None:
    await record_run(store, state)
    conn = raw(db_path)
    before = raw_run(conn, "r")
    # No digest from the caller: the workflow alone decides.
    refused = await claim(store, "r", "o2", workflow="app.other")
    assert not refused.acquired
    assert not refused.created
    assert refused.record.workflow == FLOW
    assert refused.record.input_digest == "d1"
    assert refused.record == await store.get_run("r")
    assert raw_run(conn, "r") == before


@pytest.mark.parametrize("state", STATES)
async def test_claim_with_another_digest_is_refused_and_changes_nothing(
    store: SQLiteStore, db_path: Path, raw: Raw, state: str
) -> None:
    await record_run(store, state)
    conn = raw(db_path)
    before = raw_run(conn, "r")
    refused = await claim(store, "r", "o2", input_digest="d2")
    assert not refused.acquired
    assert refused.record.workflow == FLOW
    assert refused.record.input_digest == "d1"
    assert refused.record == await store.get_run("r")
    assert raw_run(conn, "r") == before


async def test_another_workflow_is_refused_even_without_digests(
    store: SQLiteStore, db_path: Path, raw: Raw
) -> None:
    await record_run(store, "expired", digest=None)
    conn = raw(db_path)
    before = raw_run(conn, "r")
    refused = await claim(store, "r", "o2", workflow="app.other", input_digest="d1")
    assert not refused.acquired
    assert refused.record.input_digest is None
    assert raw_run(conn, "r") == before


# -- granted claims -----------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["d1", None], ids=["same-digest", "no-digest"])
@pytest.mark.parametrize("state", STATES)
async def test_claim_with_same_or_no_digest_is_granted(
    store: SQLiteStore, db_path: Path, raw: Raw, state: str, digest: str | None
) -> None:
    await record_run(store, state)
    granted = await claim(store, "r", "o2", input_digest=digest)
    assert granted.acquired
    assert not granted.created
    assert granted.record.owner == "o2"
    assert granted.record.status == "running"
    assert granted.record.recoveries == (1 if state == "expired" else 0)
    assert granted.record.input_digest == "d1"  # kept, not cleared by a caller without one
    assert granted.record == await store.get_run("r")
    assert raw(db_path).execute("SELECT input_digest FROM runs").fetchall() == [("d1",)]


async def test_created_record_keeps_the_digest(store: SQLiteStore, db_path: Path, raw: Raw) -> None:
    created = await claim(store, "r", "o1", input_digest="d1")
    assert created.acquired
    assert created.created
    assert created.record.input_digest == "d1"
    fetched = await store.get_run("r")
    assert fetched is not None
    assert fetched.input_digest == "d1"
    assert [r.input_digest for r in await store.list_runs()] == ["d1"]
    assert raw(db_path).execute("SELECT input_digest FROM runs").fetchall() == [("d1",)]


async def test_record_without_digest_keeps_none_on_granted_claims(
    store: SQLiteStore, db_path: Path, raw: Raw
) -> None:
    assert (await claim(store, "r", "o1")).record.input_digest is None
    for digest in ("d1", "d2"):  # not compared, and not recorded
        granted = await claim(store, "r", "o1", input_digest=digest)
        assert granted.acquired, digest
        assert granted.record.input_digest is None
    assert raw(db_path).execute("SELECT input_digest FROM runs").fetchall() == [(None,)]


async def test_new_run_is_claimed_in_one_statement(store: SQLiteStore) -> None:
    fast = store._db._fast  # pyright: ignore[reportPrivateUsage]
    assert fast is not None
    statements: list[str] = []
    fast.set_trace_callback(statements.append)
    try:
        assert (await claim(store, "r", "o1", input_digest="d1")).created
        new_run = [s for s in statements if "runs" in s]
        statements.clear()
        assert not (await claim(store, "r", "o2", input_digest="d2")).acquired
        refused = [s for s in statements if "runs" in s]
    finally:
        fast.set_trace_callback(None)
    assert len(new_run) == 1, new_run
    assert new_run[0].lstrip().startswith("INSERT INTO runs")
    assert len(refused) == 3, refused  # the INSERT, the UPDATE, the record as it is


# -- files of schema version 2 ------------------------------------------------------------

# The schema exactly as durable-sqlite's version 2 created it (version 1, then 2).
V2_SCHEMA = """
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL,
    inputs           TEXT,
    result           TEXT,
    has_result       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    owner            TEXT,
    lease_expires_at REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE TABLE steps (
    run_id     TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    result     TEXT NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;
CREATE TABLE signals (
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_update ON runs (status, updated_at);
CREATE TABLE step_attempts (run_id TEXT NOT NULL, step_id TEXT NOT NULL,
    attempts INTEGER NOT NULL, error TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)) WITHOUT ROWID;
PRAGMA user_version = 2;
"""

T0 = 1_700_000_000.0


def make_v2_file(path: Path) -> None:
    """A version 2 file: a failed run with two steps done, a run left running ownerless."""
    conn = sqlite3.connect(path)
    conn.executescript(V2_SCHEMA)
    conn.executemany(
        "INSERT INTO runs (run_id, workflow, status, inputs, error, owner, lease_expires_at, "
        "created_at, updated_at, recoveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("v2-failed", "app.fetch_flow", "failed", '{"n": 3}', "ValueError: boom",
             None, None, T0, T0 + 5, 1),
            ("v2-running", "app.text_flow", "running", "{}", None,
             "dead-owner", T0 + 30, T0, T0 + 1, 0),
        ],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO steps (run_id, step_id, result, attempt, created_at) VALUES (?, ?, ?, ?, ?)",
        [
            ("v2-failed", "fetch", '"zero"', 1, T0 + 1),
            ("v2-failed", "fetch#1", '{"one": 1}', 2, T0 + 2),
            ("v2-running", "label", '"hi"', 1, T0 + 1),
        ],
    )
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


@pytest.fixture
def v2_db(db_path: Path) -> Path:
    make_v2_file(db_path)
    return db_path


async def test_version_2_file_migrates_with_null_digests(v2_db: Path, raw: Raw) -> None:
    conn = raw(v2_db)
    before = {row[0]: row for row in conn.execute("SELECT * FROM runs")}
    store = SQLiteStore(v2_db)
    await store.setup()
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        assert columns[-2:] == ["input_digest", "recoveries_without_progress"]
        after = {row[0]: row for row in conn.execute("SELECT * FROM runs")}
        # Every row as it was, with a NULL digest and no take-over since progress.
        assert after == {run_id: (*row, None, 0) for run_id, row in before.items()}
        runs = {r.run_id: r for r in await store.list_runs()}
        assert set(runs) == {"v2-failed", "v2-running"}
        assert all(r.input_digest is None for r in runs.values())
        failed = runs["v2-failed"]
        assert (failed.workflow, failed.status) == ("app.fetch_flow", "failed")
        assert failed.inputs == {"n": 3}
        assert failed.recoveries == 1
        assert await store.load_steps("v2-failed") == {"fetch": "zero", "fetch#1": {"one": 1}}
    finally:
        await store.close()
    # A second open finds the current version and changes nothing.
    again = SQLiteStore(v2_db)
    await again.setup()
    await again.close()
    assert {row[0]: row for row in conn.execute("SELECT * FROM runs")} == after


async def test_version_2_file_is_refused_read_only(v2_db: Path) -> None:
    before = v2_db.read_bytes()
    store = SQLiteStore(v2_db, read_only=True)
    try:
        with pytest.raises(StoreError) as info:
            await store.setup()
        assert str(v2_db) in str(info.value)
        assert "older" in str(info.value)
    finally:
        await store.close()
    assert v2_db.read_bytes() == before


async def test_version_2_row_keeps_no_digest_on_a_granted_claim(v2_db: Path, raw: Raw) -> None:
    store = SQLiteStore(v2_db)
    await store.setup()
    try:
        granted = await store.claim_run(
            "v2-failed", "app.fetch_flow", {"n": 3}, owner="o", lease_seconds=30,
            input_digest="d1",
        )  # fmt: skip
        assert granted.acquired
        assert not granted.created
        assert granted.record.owner == "o"
        assert granted.record.recoveries == 1  # as the version 2 file had it
        assert granted.record.input_digest is None
        conn = raw(v2_db)
        assert conn.execute(
            "SELECT owner, input_digest FROM runs WHERE run_id = 'v2-failed'"
        ).fetchone() == ("o", None)
        # Still not compared; the workflow still is.
        again = await store.claim_run(
            "v2-failed", "app.fetch_flow", {"n": 4}, owner="o", lease_seconds=30,
            input_digest="d2",
        )  # fmt: skip
        assert again.acquired
        before = raw_run(conn, "v2-failed")
        other = await store.claim_run(
            "v2-failed", "app.text_flow", {}, owner="o", lease_seconds=30, input_digest="d1"
        )
        assert not other.acquired
        assert other.record.workflow == "app.fetch_flow"
        assert raw_run(conn, "v2-failed") == before
    finally:
        await store.close()


async def test_version_2_runs_resume_through_workflow(v2_db: Path, raw: Raw) -> None:
    wf = Workflow("app", db=str(v2_db), default_backoff=constant(0))
    executed: list[str] = []

    @wf.task
    async def fetch(i: int) -> Any:
        executed.append(f"fetch {i}")
        return f"fresh {i}"

    @wf.workflow
    async def fetch_flow(n: int) -> list[Any]:
        return [await fetch(i) for i in range(n)]

    @wf.task
    async def label() -> str:
        executed.append("label")
        return "fresh"

    @wf.workflow
    async def text_flow() -> str:
        return await label() + "!"

    try:
        # The failed run resumes with its inputs: two steps replay, the third runs.
        assert await fetch_flow.run("v2-failed", 3) == ["zero", {"one": 1}, "fresh 2"]
        assert executed == ["fetch 2"]
        # The run left running by an owner whose lease ran out long ago is taken over.
        assert await text_flow.run("v2-running") == "hi!"
        assert executed == ["fetch 2"]

        conn = raw(v2_db)
        statuses = dict(conn.execute("SELECT run_id, status FROM runs"))
        assert statuses == {"v2-failed": "completed", "v2-running": "completed"}
        digests = dict(conn.execute("SELECT run_id, input_digest FROM runs"))
        assert digests == {"v2-failed": None, "v2-running": None}
        # The run still belongs to its workflow: another one is refused, and nothing runs.
        with pytest.raises(RunConflictError) as info:
            await text_flow.run("v2-failed")
        assert info.type is RunConflictError  # another workflow's, not other inputs
        assert executed == ["fetch 2"]
        assert await fetch_flow.run("v2-failed", 3) == ["zero", {"one": 1}, "fresh 2"]
        assert executed == ["fetch 2"]
    finally:
        await wf.close()


async def test_version_2_run_keeps_its_old_style_sleep(db_path: Path) -> None:
    """Version 2 recorded an engine step as "sleep": with no digest on record, a resumed
    run finds it there, and does not sleep again."""
    make_v2_file(db_path)
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO runs (run_id, workflow, status, inputs, created_at, updated_at) "
        "VALUES ('v2-sleeper', 'app.nap_flow', 'running', '{}', ?, ?)",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO steps (run_id, step_id, result, attempt, created_at) "
        "VALUES ('v2-sleeper', 'sleep', ?, 1, ?)",
        (json.dumps({"wake_at": T0 + 60}), T0),
    )
    conn.commit()
    conn.close()
    wf = Workflow("app", db=str(db_path), default_backoff=constant(0))

    @wf.task
    async def after() -> str:
        return "awake"

    @wf.workflow
    async def nap_flow() -> str:
        await wf.sleep(3600)  # recorded long ago as waking at T0 + 60
        return await after()

    try:
        assert await asyncio.wait_for(nap_flow.run("v2-sleeper"), 10) == "awake"
        assert await wf.store.load_steps("v2-sleeper") == {
            "sleep": {"wake_at": T0 + 60},
            "after": "awake",
        }
    finally:
        await wf.close()
