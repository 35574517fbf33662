"""Group commit: concurrent writes share transactions, and none is lost or leaks.

The SQLite store commits a task writing alone at once, on the loop's thread. Writes of
concurrent tasks queue and are committed together, a slice per turn of the loop, or in
batches on the patient connection when the file is busy or durability is "full". These
tests pin what users rely on: far fewer commits under load, every write committed
before its ``await`` returns, a failing or cancelled write affecting no other, and
nothing queued lost behind a WAL checkpoint or at close.
"""

import asyncio
import errno
import math
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable.backoff import constant
from durable.errors import StoreError
from durable_sqlite import SQLiteStore, commits, connection
from durable_sqlite.transactions import Tx

Raw = Callable[..., sqlite3.Connection]


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path, busy_timeout=5)
    await store.setup()
    yield store
    await store.close()


def trace(conn: sqlite3.Connection) -> list[str]:
    """Every statement ``conn`` runs from now on (COMMITs counted from it)."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return statements


def commit_count(statements: list[str]) -> int:
    return sum(sql.strip().upper() == "COMMIT" for sql in statements)


def insert_signal(name: str, then: BaseException | None = None) -> Callable[[Tx], Awaitable[str]]:
    """A write body inserting one row (the signal ``name`` of run "t"), then raising ``then``."""

    async def body(tx: Tx) -> str:
        await tx.execute(
            "INSERT INTO signals (run_id, name, payload, created_at) VALUES ('t', ?, '1', 0)",
            (name,),
        )
        if then is not None:
            raise then
        return name

    return body


def stored_signals(raw: Raw, path: Path) -> set[str]:
    """Signal names as another connection sees them: only committed rows."""
    return {name for (name,) in raw(path).execute("SELECT name FROM signals WHERE run_id = 't'")}


def stored_steps(raw: Raw, path: Path, run_id: str) -> set[str]:
    rows = raw(path).execute("SELECT step_id FROM steps WHERE run_id = ?", (run_id,))
    return {step_id for (step_id,) in rows}


# -- grouping -----------------------------------------------------------------------------


async def test_concurrent_checkpoints_share_commits(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    statements = trace(store._db.fast)
    results = await asyncio.gather(
        *(store.checkpoint_step("many", f"s{i}", {"i": i}) for i in range(200))
    )
    assert results == [True] * 200  # no cancel requested: each write returned its result
    # One transaction per turn holds ~10 writes; one commit per write would be 200.
    assert commit_count(statements) < 50
    assert stored_steps(raw, db_path, "many") == {f"s{i}" for i in range(200)}
    assert await store.load_steps("many") == {f"s{i}": {"i": i} for i in range(200)}


async def test_a_single_writer_commits_each_write_at_once(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    statements = trace(store._db.fast)
    reader = raw(db_path)
    loop = asyncio.get_running_loop()
    for i in range(20):
        turned: list[bool] = []
        loop.call_soon(turned.append, True)
        await store.set_step("alone", f"s{i}", i)
        # Committed without waiting for a turn of the loop (no queueing latency) ...
        assert turned == []
        # ... and visible to another connection as soon as the await returns.
        assert reader.execute(
            "SELECT result FROM steps WHERE run_id = 'alone' AND step_id = ?", (f"s{i}",)
        ).fetchone() == (str(i),)
    assert commit_count(statements) == 20


def writes_per_commit(statements: list[str]) -> list[int]:
    """How many INSERTs each committed transaction of ``statements`` held, in order."""
    sizes, inserts = [], 0
    for sql in statements:
        if sql.lstrip().upper().startswith("INSERT"):
            inserts += 1
        elif sql.strip().upper() == "COMMIT":
            sizes.append(inserts)
            inserts = 0
    return sizes


async def test_while_writes_are_concurrent_the_first_writer_of_a_turn_queues_too(
    store: SQLiteStore,
) -> None:
    """Tasks writing turn after turn share one commit a turn, not one alone plus a batch."""
    statements = trace(store._db.fast)

    async def writer(task: int) -> None:
        for i in range(4):
            await asyncio.sleep(0)  # as a step doing I/O would: each write in a new turn
            await store.set_step(f"w{task}", f"s{i}", i)

    await asyncio.gather(*(writer(task) for task in range(10)))
    sizes = writes_per_commit(statements)
    assert sum(sizes) == 40
    # The very first write commits at once; after it, every commit carries several.
    assert sizes[0] == 1
    assert all(size > 1 for size in sizes[1:]), sizes

    # Alone again: once a batch holds one write, writes commit at once as before.
    loop = asyncio.get_running_loop()
    await store.set_step("alone", "first", 0)
    turned: list[bool] = []
    loop.call_soon(turned.append, True)
    await store.set_step("alone", "second", 1)
    assert turned == []


async def test_each_grouped_write_is_committed_before_its_await_returns(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    reader = raw(db_path)
    seen: list[str] = []

    async def write_then_look(i: int) -> None:
        await store.set_step("grouped", f"s{i}", i)
        row = reader.execute(
            "SELECT step_id FROM steps WHERE run_id = 'grouped' AND step_id = ?", (f"s{i}",)
        ).fetchone()
        seen.extend(row or ())

    statements = trace(store._db.fast)
    await asyncio.gather(*(write_then_look(i) for i in range(100)))
    assert commit_count(statements) < 100  # the writes were indeed grouped
    assert sorted(seen) == sorted(f"s{i}" for i in range(100))


# -- failures and cancellation ------------------------------------------------------------


async def test_a_failing_body_fails_alone(store: SQLiteStore, raw: Raw, db_path: Path) -> None:
    async def bad_sql(tx: Tx) -> str:
        await tx.execute("INSERT INTO no_such_table VALUES (1)")
        return "never"

    bodies = [insert_signal(f"ok{i}") for i in range(10)]
    # Both failures land in the queue (the first write alone commits at once), so they
    # roll back slices that hold other writes.
    bodies[3] = insert_signal("partial", then=ValueError("body fails after its INSERT"))
    bodies[7] = bad_sql
    results = await asyncio.gather(
        *(store._db.write(body) for body in bodies), return_exceptions=True
    )

    assert isinstance(results[3], ValueError)
    assert isinstance(results[7], sqlite3.OperationalError)  # the raw error, at this level
    expected = {f"ok{i}" for i in range(10) if i not in (3, 7)}
    assert {r for r in results if isinstance(r, str)} == expected
    assert stored_signals(raw, db_path) == expected  # and "partial" was rolled back
    assert not store._db.fast.in_transaction


async def test_a_failing_store_write_raises_store_error_alone(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    # A NULL run id breaks the steps table's NOT NULL constraint inside the batch.
    run_ids = ["r", "r", None, "r", "r", "r"]
    results = await asyncio.gather(
        *(store.set_step(run_id, f"s{i}", i) for i, run_id in enumerate(run_ids)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(results[2], StoreError)
    assert "could not save a step" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 5
    assert stored_steps(raw, db_path, "r") == {"s0", "s1", "s3", "s4", "s5"}


async def test_a_write_cancelled_before_its_batch_is_dropped(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    tasks = [asyncio.create_task(store._db.write(insert_signal(f"w{i}"))) for i in range(5)]
    await asyncio.sleep(0)  # every task ran once: w0 committed alone, w1..w4 queued
    assert tasks[0].done()
    assert not any(task.done() for task in tasks[1:])
    tasks[2].cancel()  # before the next turn, when the queue is committed

    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert stored_signals(raw, db_path) == {"w0", "w1", "w3", "w4"}


# -- the patient connection ---------------------------------------------------------------


async def test_writes_wait_out_another_connections_lock(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    lock = raw(db_path)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    writes = asyncio.gather(*(store.set_step("busy", f"s{i}", i) for i in range(40)))
    started = time.monotonic()
    await asyncio.sleep(0.2)
    # The loop was never held waiting for the lock (the fast connection never waits) ...
    assert time.monotonic() - started < 1.0
    assert not writes.done()  # ... and nothing claims to be committed while it is held.
    lock.execute("COMMIT")

    await asyncio.wait_for(writes, timeout=5)
    assert stored_steps(raw, db_path, "busy") == {f"s{i}" for i in range(40)}
    assert store._db.times_busy > 0
    assert store._db._patient is not None  # after BUSY_ON_LOOP, waited out off the loop


async def test_a_short_lock_is_waited_out_on_the_loop(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    # Another process's commit holds the lock for well under BUSY_ON_LOOP: the queue
    # tries again on the loop's thread, without handing anything to the patient thread.
    lock = raw(db_path)
    lock.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.01, lock.execute, "COMMIT")
    await asyncio.wait_for(
        asyncio.gather(*(store.set_step("brief", f"s{i}", i) for i in range(10))), timeout=5
    )
    assert stored_steps(raw, db_path, "brief") == {f"s{i}" for i in range(10)}
    assert store._db.times_busy > 0
    assert store._db._patient is None


async def test_durability_full_groups_writes_on_the_patient_thread(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, durability="full", busy_timeout=5)
    await store.setup()
    try:
        await store.set_step("full", "first", 0)  # opens the patient connection
        patient = store._db._patient
        assert patient is not None
        patient_statements: list[str] = []
        await patient.set_trace_callback(patient_statements.append)
        fast_statements = trace(store._db.fast)

        await asyncio.gather(*(store.set_step("full", f"s{i}", i) for i in range(100)))

        # Batches of up to PATIENT_BATCH writes per fsync, never one per write ...
        assert 0 < commit_count(patient_statements) <= math.ceil(100 / commits.PATIENT_BATCH)
        assert commit_count(fast_statements) == 0  # ... and no fsync on the loop's thread.
        assert stored_steps(raw, db_path, "full") == {"first"} | {f"s{i}" for i in range(100)}
    finally:
        await store.close()


# -- WAL checkpoints and close ------------------------------------------------------------


async def test_writes_wait_while_writes_are_held_and_resume_after(
    store: SQLiteStore, raw: Raw, db_path: Path
) -> None:
    db = store._db
    db.holding_writes = True  # as during a WAL checkpoint
    writes = asyncio.gather(*(store.set_step("held", f"s{i}", i) for i in range(10)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not writes.done()
    assert stored_steps(raw, db_path, "held") == set()

    db.holding_writes = False
    db._queue.resume()
    await asyncio.wait_for(writes, timeout=5)
    assert stored_steps(raw, db_path, "held") == {f"s{i}" for i in range(10)}


async def test_close_commits_writes_queued_behind_a_checkpoint(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, busy_timeout=5)
    await store.setup()
    db = store._db
    # Writes queue behind a checkpoint; enough that committing them takes many turns
    # of the loop, so only close's drain (not a lucky turn) can get them all in.
    db.holding_writes = True
    writes = [asyncio.create_task(store.set_step("closing", f"s{i}", i)) for i in range(500)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in writes)
    db._checkpoint = asyncio.create_task(db._run_checkpoint())  # the real checkpoint
    await store.close()

    assert all(task.done() for task in writes)
    assert [task.result() for task in writes] == [None] * 500
    assert stored_steps(raw, db_path, "closing") == {f"s{i}" for i in range(500)}


async def test_writes_go_on_while_a_checkpoint_flushes_the_wal(
    store: SQLiteStore, raw: Raw, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushing, release = threading.Event(), threading.Event()
    flushed: list[str] = []

    def slow_flush(path: str) -> None:  # the fsync of a large WAL, in its thread
        flushed.append(path)
        flushing.set()
        release.wait(timeout=10)

    monkeypatch.setattr(connection, "_flush_to_disk", slow_flush)
    db = store._db
    await store.set_step("before", "s", 0)
    db._checkpoint = asyncio.create_task(db._run_checkpoint())
    try:
        assert await asyncio.to_thread(flushing.wait, 5)

        # The WAL is being flushed: writes are not held meanwhile, and they commit on the
        # patient thread (a commit beside that fsync can block for milliseconds) ...
        on_loop = trace(db.fast)
        await asyncio.wait_for(store.set_step("during", "alone", 0), timeout=5)
        writes = asyncio.gather(*(store.set_step("during", f"s{i}", i) for i in range(20)))
        await asyncio.wait_for(writes, timeout=5)
        assert stored_steps(raw, db_path, "during") == {"alone"} | {f"s{i}" for i in range(20)}
        assert commit_count(on_loop) == 0
        assert not db._checkpoint.done()
    finally:
        release.set()

    # ... and once it is flushed, the checkpoint copies the WAL into the database file.
    await asyncio.wait_for(db._checkpoint, timeout=10)
    assert flushed[0] == f"{db_path}-wal"
    assert steps_in_file_alone(raw, db_path) >= {("before", "s"), ("during", "s19")}
    await store.set_step("after", "s", 0)  # and commits are back on the loop's thread
    assert commit_count(on_loop) == 1


async def test_a_checkpoint_goes_on_when_flushing_the_wal_fails(
    store: SQLiteStore, raw: Raw, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_flush(path: str) -> None:
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(connection, "_flush_to_disk", failing_flush)
    for i in range(20):
        await store.set_step("r", f"s{i}", i)
    await store._db._run_checkpoint()
    # Left to SQLite's own fsync to report, never a reason to let the WAL grow.
    assert steps_in_file_alone(raw, db_path) == {("r", f"s{i}") for i in range(20)}


def steps_in_file_alone(raw: Raw, db_path: Path) -> set[tuple[str, str]]:
    """The steps a copy of the database file holds without its WAL: what was checkpointed."""
    alone = db_path.with_name("file-alone.db")
    shutil.copyfile(db_path, alone)
    return set(raw(alone).execute("SELECT run_id, step_id FROM steps"))


# -- end to end ---------------------------------------------------------------------------


def make_app(store: SQLiteStore, executed: list[tuple[int, int]]) -> Any:
    """The app: "flow" runs three steps; ``executed`` records every step body that ran."""
    wf = Workflow("app", db=store, default_backoff=constant(0))

    @wf.task(name="step")
    async def step(n: int, i: int) -> int:
        executed.append((n, i))
        return n * 10 + i

    @wf.workflow(id="run-{n}", name="flow")
    async def flow(n: int) -> int:
        return sum([await step(n, i, step_id=f"s{i}") for i in range(3)])

    return wf, flow


async def test_many_concurrent_workflows_complete_and_replay(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    executed: list[tuple[int, int]] = []
    wf, flow = make_app(store, executed)
    await store.setup()
    statements = trace(store._db.fast)
    try:
        results = await asyncio.gather(*(flow(n) for n in range(300)))
        assert results == [30 * n + 3 for n in range(300)]
        assert len(executed) == 900
        runs = await store.list_runs(limit=1000)
        assert len(runs) == 300
        assert {run.status for run in runs} == {"completed"}
        # At least 1,500 writes (a claim, 3 steps and the outcome per run) in ~300
        # transactions; the bound is loose because a slice's size depends on the
        # machine's speed (a tracer such as coverage's makes slices smaller).
        assert commit_count(statements) < 1000
    finally:
        await wf.close()

    # A fresh store on the file returns the recorded results; no step body runs again.
    replayed: list[tuple[int, int]] = []
    wf_again, flow_again = make_app(SQLiteStore(db_path), replayed)
    try:
        results = await asyncio.gather(*(flow_again(n) for n in range(300)))
        assert results == [30 * n + 3 for n in range(300)]
        assert replayed == []
    finally:
        await wf_again.close()
