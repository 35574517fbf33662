"""A database file deleted or replaced under a running store: a clear error, not lost runs.

SQLite keeps writing to the file it opened, so without a check a run whose file was
removed mid-run "completed" into an unlinked inode that nobody can open again. The store
compares the file at its path with the one it opened (at most every
``FILE_CHECK_INTERVAL`` seconds) and fails from then on, naming the path.
"""

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from durable import StoreError, Workflow, WorkflowFunction
from durable.backoff import constant
from durable_sqlite import SQLiteStore, connection
from durable_sqlite.store import Durability


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def replace_database(path: Path) -> None:
    """Another, valid SQLite database at the same path (another inode)."""
    remove_database(path)
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE unrelated (x)")
    other.commit()
    other.close()


async def past_the_check_interval() -> None:
    await asyncio.sleep(connection.FILE_CHECK_INTERVAL + 0.02)


def make_flow(
    store: SQLiteStore, at_step_1: Callable[[], Awaitable[None]]
) -> tuple[Workflow, WorkflowFunction[[], int], list[int]]:
    """Five steps; the second calls ``at_step_1`` after the first one's checkpoint."""
    wf = Workflow("app", db=store, default_backoff=constant(0), default_retries=0)
    executed: list[int] = []

    @wf.task
    async def step(i: int) -> int:
        executed.append(i)
        if i == 1:
            await at_step_1()
        return i

    @wf.workflow
    async def flow() -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(5)])

    return wf, flow, executed


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_deleted_file_fails_the_run(db_path: Path, durability: Durability) -> None:
    store = SQLiteStore(db_path, durability=durability)

    async def delete() -> None:
        remove_database(db_path)
        await past_the_check_interval()

    wf, flow, executed = make_flow(store, delete)
    try:
        with pytest.raises(StoreError, match="deleted") as info:
            await flow.run("r")
        assert str(db_path) in str(info.value)
        assert executed == [0, 1]
        assert not db_path.exists()  # nothing made a new file at the path either
        # The store keeps failing, for writes and reads alike.
        with pytest.raises(StoreError, match="deleted"):
            await store.set_step("r", "later", 1)
        with pytest.raises(StoreError, match="deleted"):
            await store.get_run("r")
    finally:
        await wf.close()
    assert not db_path.exists()


async def test_replaced_file_fails_the_run(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "FILE_CHECK_INTERVAL", 0.0)  # every check: no sleep
    store = SQLiteStore(db_path)

    async def replace() -> None:
        replace_database(db_path)

    wf, flow, executed = make_flow(store, replace)
    try:
        with pytest.raises(StoreError, match="replaced") as info:
            await flow.run("r")
        assert str(db_path) in str(info.value)
        assert executed == [0, 1]
    finally:
        await wf.close()
    # The new file was left as it was: no schema, no runs written into it.
    other = sqlite3.connect(db_path)
    try:
        tables = other.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    finally:
        other.close()
    assert tables == [("unrelated",)]


async def test_concurrent_writes_after_deletion_all_fail(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.set_step("r", "before", 0)
        remove_database(db_path)
        await past_the_check_interval()
        results = await asyncio.gather(
            *(store.set_step("r", f"s{i}", i) for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results), results
        assert all(str(db_path) in str(r) for r in results)
    finally:
        await store.close()
    assert not db_path.exists()


async def test_file_renamed_back_is_the_same_file(db_path: Path) -> None:
    """Only another file at the path is an error: the same inode (renamed back) is not."""
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.set_step("r", "a", 1)
        moved = db_path.with_name("moved.db")
        os.rename(db_path, moved)
        os.rename(moved, db_path)
        await past_the_check_interval()
        await store.set_step("r", "b", 2)
        assert await store.load_steps("r") == {"a": 1, "b": 2}
    finally:
        await store.close()
