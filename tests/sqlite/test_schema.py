"""The file the store creates, its schema version, the seed's files, corrupt files."""

import datetime as dt
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from durable import StoreError, Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore
from durable_sqlite.schema import SCHEMA_VERSION

Raw = Callable[..., sqlite3.Connection]


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """A permissive umask: the store must not rely on the umask for privacy."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_new_file_is_wal_with_current_schema_version(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.set_step("r", "a", 1)
        conn = raw(db_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"runs", "steps", "signals"} <= tables
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        assert {"recoveries", "cancel_requested", "input_digest"} <= columns
    finally:
        await store.close()


async def test_wal_mode_persists_after_close(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    await store.close()
    assert raw(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_file_is_private(db_path: Path, umask_zero: None) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.set_step("r", "a", "secret")
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        # SQLite gives the WAL and shared-memory files the database file's mode.
        for suffix in ("-wal", "-shm"):
            side = db_path.with_name(db_path.name + suffix)
            if side.exists():
                assert stat.S_IMODE(side.stat().st_mode) == 0o600, suffix
    finally:
        await store.close()


async def test_file_is_private_through_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_zero: None
) -> None:
    monkeypatch.chdir(tmp_path)
    wf = Workflow("app")  # the default: durable.db in the working directory

    @wf.task
    async def step() -> int:
        return 1

    @wf.workflow
    async def flow() -> int:
        return await step()

    assert await flow() == 1
    await wf.close()
    assert stat.S_IMODE((tmp_path / "durable.db").stat().st_mode) == 0o600


async def test_existing_file_mode_is_left_alone(db_path: Path, raw: Raw) -> None:
    raw(db_path).execute("CREATE TABLE mine (x)")
    os.chmod(db_path, 0o640)
    store = SQLiteStore(db_path)
    await store.setup()
    await store.close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


async def test_setup_twice_and_second_store_do_not_migrate_again(db_path: Path) -> None:
    first = SQLiteStore(db_path)
    await first.setup()
    await first.set_step("r", "a", [1, 2])
    await first.setup()  # idempotent
    second = SQLiteStore(db_path)
    await second.setup()
    try:
        assert await second.get_step("r", "a") == (True, [1, 2])
    finally:
        await first.close()
        await second.close()


# -- a file from a newer durable-sqlite ---------------------------------------------------


def make_newer_file(path: Path, raw: Raw) -> None:
    conn = raw(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute("INSERT INTO future VALUES ('keep me')")
    conn.execute("PRAGMA user_version = 99")


async def test_newer_schema_version_is_refused(db_path: Path, raw: Raw) -> None:
    make_newer_file(db_path, raw)
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError) as info:
        await store.setup()
    message = str(info.value)
    assert str(db_path) in message
    assert "upgrade" in message
    assert "99" in message
    check = raw(db_path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 99
    assert check.execute("SELECT x FROM future").fetchall() == [("keep me",)]
    tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
    assert tables == {"future"}


async def test_newer_schema_version_is_refused_by_workflow(db_path: Path, raw: Raw) -> None:
    make_newer_file(db_path, raw)
    wf = Workflow("app", db=str(db_path))

    @wf.workflow
    async def flow() -> int:
        return 1

    with pytest.raises(StoreError, match="upgrade"):
        await flow()
    await wf.close()


async def test_newer_schema_version_is_refused_read_only(db_path: Path, raw: Raw) -> None:
    make_newer_file(db_path, raw)
    store = SQLiteStore(db_path, read_only=True)
    try:
        with pytest.raises(StoreError, match="upgrade"):
            await store.setup()
    finally:
        await store.close()


# -- the seed's version 0 files -----------------------------------------------------------


async def test_seed_file_data_comes_through(
    seed_db: Path, seed_steps: dict[tuple[str, str], Any], raw: Raw
) -> None:
    db_path = seed_db
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        for (run_id, step_id), value in seed_steps.items():
            assert await store.get_step(run_id, step_id) == (True, value), (run_id, step_id)
        assert await store.load_steps("seed-failed") == {
            "fetch": None,
            "fetch#1": "hello",
            "fetch#2": {"a": [1, 2.5], "b": False},
        }
        assert await store.get_step("seed-failed", "fetch#3") == (False, None)

        assert await store.get_signal("seed-failed", "approval") == (True, {"approved": True})
        assert await store.get_signal("seed-failed", "nothing") == (True, None)
        assert await store.get_signal("seed-running", "zero") == (True, 0)
        assert await store.get_signal("seed-failed", "other") == (False, None)
        assert await store.set_signal("seed-failed", "approval", "again") is False

        done = await store.get_run("seed-done")
        assert done is not None
        assert done.status == "completed"
        assert done.workflow == "app.compute_flow"
        assert done.has_result is False  # the seed never stored results
        assert done.created_at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert done.updated_at == dt.datetime(2024, 1, 2, 3, 4, 6, tzinfo=dt.UTC)

        failed = await store.get_run("seed-failed")
        assert failed is not None
        assert failed.status == "failed"
        assert failed.error == "ValueError: boom"

        running = await store.get_run("seed-running")
        assert running is not None
        assert running.status == "running"
        assert running.owner is None
        assert running.created_at is not None
        age = dt.datetime.now(dt.UTC) - running.created_at
        assert dt.timedelta(0) <= age < dt.timedelta(minutes=5)

        # Runs of the seed have no input digest (their inputs are not compared).
        assert [r.input_digest for r in await store.list_runs()] == [None, None, None]

        statuses = {r.run_id: r.status for r in await store.list_runs()}
        assert statuses == {
            "seed-done": "completed",
            "seed-failed": "failed",
            "seed-running": "running",
        }
    finally:
        await store.close()

    conn = raw(db_path)
    # Version 0 to 1 (the import), 2, 3 and 4 in one open.
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM runs WHERE input_digest IS NULL").fetchone() == (3,)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    # The seed's tables were replaced, not kept beside the new ones.
    assert tables == {"runs", "steps", "signals", "step_attempts"}
    assert conn.execute("SELECT attempt FROM steps WHERE step_id = 'fetch#1'").fetchone() == (2,)


async def test_seed_file_is_migrated_once(
    seed_db: Path, seed_steps: dict[tuple[str, str], Any], raw: Raw
) -> None:
    db_path = seed_db
    for _ in range(2):
        store = SQLiteStore(db_path)
        await store.setup()
        assert await store.get_step("seed-failed", "fetch#1") == (True, "hello")
        await store.close()
    count = raw(db_path).execute("SELECT count(*) FROM steps").fetchone()[0]
    assert count == len(seed_steps)


async def test_workflow_over_seed_file_replays_its_steps(seed_db: Path) -> None:
    db_path = seed_db
    wf = Workflow("app", db=str(db_path), default_backoff=constant(0))
    executed: list[str] = []

    @wf.task
    async def fetch(n: int) -> Any:
        executed.append(f"fetch {n}")
        return f"fresh {n}"

    @wf.task
    async def compute() -> int:
        executed.append("compute")
        return -1

    @wf.workflow
    async def fetch_flow() -> list[Any]:
        return [await fetch(n) for n in range(4)]

    @wf.task
    async def label() -> str:
        executed.append("label")
        return "fresh"

    @wf.workflow
    async def compute_flow() -> int:
        return await compute() + 1

    @wf.workflow
    async def text_flow() -> str:
        return await label() + "!"

    try:
        # A failed seed run resumes: its three checkpointed steps replay, the fourth runs.
        assert await fetch_flow.run("seed-failed") == [
            None,
            "hello",
            {"a": [1, 2.5], "b": False},
            "fresh 3",
        ]
        assert executed == ["fetch 3"]
        record = await wf.get_run("seed-failed")
        assert record is not None
        assert record.status == "completed"

        # A seed run that completed (no stored result) runs its body with steps replayed.
        assert await compute_flow.run("seed-done") == 43
        # A seed run left 'running' with no owner is resumed, not waited on.
        assert await text_flow.run("seed-running") == "!"
        assert executed == ["fetch 3"]
    finally:
        await wf.close()


async def test_read_only_seed_file_is_not_misread(seed_db: Path) -> None:
    before = seed_db.read_bytes()
    store = SQLiteStore(seed_db, read_only=True)
    try:
        refusal: StoreError | None = None
        try:
            await store.setup()
        except StoreError as exc:  # refusing, with the file's name, is fine too
            refusal = exc
        if refusal is not None:
            assert str(seed_db) in str(refusal)
            return
        assert await store.get_step("seed-failed", "fetch#1") == (True, "hello")
        assert await store.get_step("seed-failed", "fetch") == (True, None)
    finally:
        await store.close()
        assert seed_db.read_bytes() == before


async def test_database_of_another_application_is_refused_intact(db_path: Path, raw: Raw) -> None:
    conn = raw(db_path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, athlete TEXT, km REAL)")
    conn.execute("INSERT INTO runs (athlete, km) VALUES ('ada', 10.5)")
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert str(db_path) in str(info.value)
    await store.close()
    assert conn.execute("SELECT athlete, km FROM runs").fetchall() == [("ada", 10.5)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"runs"}


# -- files that are not databases ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        os.urandom(8192),
        b"this is my shopping list, not a database\n" * 200,
        b"SQLite format 3\x00" + os.urandom(4080),  # the magic string, then garbage
    ],
    ids=["random", "text", "bad-header"],
)
async def test_corrupt_file_is_reported_and_left_alone(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == content
    # Trying again gives the same clear error, and still writes nothing.
    with pytest.raises(StoreError):
        await store.setup()
    assert db_path.read_bytes() == content
    await store.close()


async def test_corrupt_file_is_reported_by_workflow(db_path: Path) -> None:
    content = b"not a database at all " * 100
    db_path.write_bytes(content)
    wf = Workflow("app", db=str(db_path))
    ran: list[int] = []

    @wf.workflow
    async def flow() -> int:
        ran.append(1)
        return 1

    with pytest.raises(StoreError, match="not a SQLite database"):
        await flow()
    assert ran == []
    assert db_path.read_bytes() == content
    await wf.close()


async def test_empty_file_becomes_a_database(db_path: Path) -> None:
    db_path.write_bytes(b"")
    store = SQLiteStore(db_path)
    await store.setup()
    try:
        await store.set_step("r", "a", 1)
        assert await store.get_step("r", "a") == (True, 1)
    finally:
        await store.close()


async def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "t.db"
    store = SQLiteStore(path)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert str(path) in str(info.value)


async def test_directory_as_path_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    with pytest.raises(StoreError) as info:
        await store.setup()
    assert str(tmp_path) in str(info.value)
