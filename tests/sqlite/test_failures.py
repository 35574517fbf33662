"""A read-only store and a full disk: clear errors, and nothing committed is lost."""

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from durable import StoreError, Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore

Raw = Callable[..., sqlite3.Connection]


async def make_db(path: Path) -> None:
    """A database with one completed run (3 steps) and one failed run (1 step)."""
    wf = Workflow("app", db=str(path), default_backoff=constant(0), default_retries=0)

    @wf.task
    async def step(i: int) -> dict[str, int]:
        return {"i": i}

    @wf.workflow
    async def good() -> int:
        return sum([(await step(i, step_id=f"s{i}"))["i"] for i in range(3)])

    @wf.workflow
    async def bad() -> int:
        await step(7, step_id="s7")
        raise ValueError("boom")

    assert await good.run("good") == 3
    with pytest.raises(ValueError, match="boom"):
        await bad.run("bad")
    assert await wf.complete("good", "sig", "payload") is True
    await wf.close()


def snapshot(path: Path, raw: Raw) -> dict[str, list[tuple[object, ...]]]:
    conn = raw(path)
    return {
        "steps": conn.execute("SELECT run_id, step_id, result FROM steps ORDER BY 1, 2").fetchall(),
        "runs": conn.execute("SELECT run_id, status, result FROM runs ORDER BY 1").fetchall(),
        "signals": conn.execute("SELECT run_id, name, payload FROM signals").fetchall(),
    }


# -- read-only ----------------------------------------------------------------------------


async def test_read_only_reads_work_and_writes_fail_clearly(db_path: Path, raw: Raw) -> None:
    await make_db(db_path)
    before = snapshot(db_path, raw)

    store = SQLiteStore.from_url(f"sqlite:///{db_path}?mode=ro")
    await store.setup()
    try:
        record = await store.get_run("good")
        assert record is not None
        assert record.status == "completed"
        assert record.result == 3
        failed = await store.get_run("bad")
        assert failed is not None
        assert failed.status == "failed"
        assert failed.error is not None
        assert "boom" in failed.error
        assert await store.get_step("good", "s1") == (True, {"i": 1})
        assert await store.load_steps("good") == {f"s{i}": {"i": i} for i in range(3)}
        assert await store.get_signal("good", "sig") == (True, "payload")
        assert {r.run_id for r in await store.list_runs()} == {"good", "bad"}

        with pytest.raises(StoreError, match="read-only") as info:
            await store.set_step("good", "s1", {"i": 999})
        assert str(db_path) in str(info.value)
        with pytest.raises(StoreError, match="read-only"):
            await store.set_signal("bad", "sig", 1)
        with pytest.raises(StoreError, match="read-only"):
            await store.mark_run_failed("good", "overwritten")
        # Reads still work after failed writes: no transaction was left open.
        assert await store.get_step("good", "s2") == (True, {"i": 2})
        assert not store._db.fast.in_transaction
    finally:
        await store.close()

    assert snapshot(db_path, raw) == before


async def test_read_only_workflow_fails_clearly_and_changes_nothing(
    db_path: Path, raw: Raw
) -> None:
    await make_db(db_path)
    before = snapshot(db_path, raw)
    wf = Workflow("app", db=f"sqlite:///{db_path}?mode=ro", default_retries=0)
    executed: list[str] = []

    @wf.task
    async def step(i: int) -> dict[str, int]:
        executed.append(f"s{i}")
        return {"i": i}

    @wf.workflow
    async def bad() -> int:
        await step(7, step_id="s7")
        return 1

    @wf.workflow
    async def fresh() -> int:
        await step(1)
        return 1

    try:
        with pytest.raises(StoreError, match="read-only"):
            await bad.run("bad")  # resuming a failed run must claim it: a write
        with pytest.raises(StoreError, match="read-only"):
            await fresh.run("new-run")
        assert executed == []  # no step body ran without a place to record it
        assert await wf.get_run("new-run") is None
    finally:
        await wf.close()

    assert snapshot(db_path, raw) == before
    # Reopened read-write, every checkpoint is intact and the runs resume normally.
    rw = SQLiteStore(db_path)
    await rw.setup()
    try:
        assert await rw.load_steps("good") == {f"s{i}": {"i": i} for i in range(3)}
        assert await rw.get_step("bad", "s7") == (True, {"i": 7})
        await rw.set_step("bad", "s8", 8)
        assert await rw.get_step("bad", "s8") == (True, 8)
    finally:
        await rw.close()


async def test_read_only_missing_file_is_an_error_and_not_created(db_path: Path) -> None:
    store = SQLiteStore(db_path, read_only=True)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert str(db_path) in str(info.value)
    assert not db_path.exists()
    await store.close()


async def test_read_only_sees_later_commits_of_a_writer(db_path: Path) -> None:
    writer = SQLiteStore(db_path)
    await writer.setup()
    reader = SQLiteStore(db_path, read_only=True)
    await reader.setup()
    try:
        assert await reader.get_step("r", "a") == (False, None)
        await writer.set_step("r", "a", "now")
        assert await reader.get_step("r", "a") == (True, "now")
    finally:
        await reader.close()
        await writer.close()


# -- disk full ----------------------------------------------------------------------------


async def test_disk_full_is_a_clear_error_and_loses_nothing(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        for i in range(5):
            await store.set_step("r", f"small-{i}", i)
        pages = store._db.fast.execute("PRAGMA page_count").fetchone()[0]
        store._db.fast.execute(f"PRAGMA max_page_count = {pages + 8}")

        big = "x" * 6000
        committed: dict[str, str] = {}
        error: StoreError | None = None
        for i in range(100):
            try:
                await store.set_step("r", f"big-{i}", big)
            except StoreError as exc:
                error = exc
                break
            committed[f"big-{i}"] = big
        assert error is not None, "100 large steps fit in 8 pages"
        assert "full" in str(error)
        assert str(db_path) in str(error)
        assert committed  # some large steps fit before the limit
        assert not store._db.fast.in_transaction

        expected: dict[str, object] = {f"small-{i}": i for i in range(5)} | committed
        assert await store.load_steps("r") == expected
        for step_id, value in expected.items():
            assert await store.get_step("r", step_id) == (True, value)
        # Small writes that fit in the space left still work, reads keep working.
        assert await store.set_signal("r", "after", None) is True
        assert await store.get_signal("r", "after") == (True, None)
    finally:
        await store.close()

    reopened = SQLiteStore(db_path)
    await reopened.setup()
    try:
        assert await reopened.load_steps("r") == expected
    finally:
        await reopened.close()
    assert raw(db_path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_disk_full_during_workflow_keeps_earlier_steps(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    wf = Workflow("app", db=store, default_backoff=constant(0), default_retries=0)
    executed: list[int] = []

    @wf.task
    async def step(i: int) -> str:
        executed.append(i)
        return "y" * (200 if i < 3 else 20000)

    @wf.workflow
    async def flow() -> int:
        return sum([len(await step(i, step_id=f"s{i}")) for i in range(5)])

    try:
        await store.setup()
        pages = store._db.fast.execute("PRAGMA page_count").fetchone()[0]
        store._db.fast.execute(f"PRAGMA max_page_count = {pages + 4}")
        with pytest.raises(StoreError, match="full"):
            await flow.run("r")
        assert await store.load_steps("r") == {f"s{i}": "y" * 200 for i in range(3)}
        assert executed == [0, 1, 2, 3]

        store._db.fast.execute("PRAGMA max_page_count = 1073741823")  # space again
        assert await flow.run("r") == 3 * 200 + 2 * 20000
        assert executed == [0, 1, 2, 3, 3, 4]  # s0..s2 replayed; s3 ran again
    finally:
        await wf.close()
