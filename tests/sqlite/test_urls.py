"""Where a ``db=`` URL or path puts the database, and which options it takes."""

import sqlite3
from pathlib import Path

import pytest

from durable import StoreError, Workflow
from durable_sqlite import SQLiteStore


async def run_one_step(wf: Workflow, run_id: str = "r") -> int:
    @wf.task
    async def step() -> int:
        return 7

    @wf.workflow
    async def flow() -> int:
        return await step()

    try:
        return await flow.run(run_id)
    finally:
        await wf.close()


def stored_steps(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT run_id, step_id FROM steps").fetchall()
    finally:
        conn.close()


async def test_relative_url_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    wf = Workflow("app", db="sqlite:///rel.db")
    assert isinstance(wf.store, SQLiteStore)
    assert await run_one_step(wf) == 7
    assert stored_steps(tmp_path / "rel.db") == [("r", "step")]


async def test_relative_url_in_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert await run_one_step(Workflow("app", db="sqlite:///data/jobs.db")) == 7
    assert stored_steps(tmp_path / "data" / "jobs.db") == [("r", "step")]


async def test_absolute_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    target = tmp_path / "abs.db"
    url = f"sqlite:///{target}"  # tmp_path is absolute: sqlite:////tmp/...
    assert url.startswith("sqlite:////")
    store = SQLiteStore.from_url(url)
    assert Path(store.path) == target
    assert await run_one_step(Workflow("app", db=url)) == 7
    assert stored_steps(target) == [("r", "step")]
    assert list(elsewhere.iterdir()) == []


async def test_percent_encoded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert await run_one_step(Workflow("app", db="sqlite:///my%20jobs.db")) == 7
    assert stored_steps(tmp_path / "my jobs.db") == [("r", "step")]


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
async def test_bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, absolute: bool) -> None:
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "bare.db") if absolute else "bare.db"
    wf = Workflow("app", db=db)
    assert isinstance(wf.store, SQLiteStore)
    assert await run_one_step(wf) == 7
    assert stored_steps(tmp_path / "bare.db") == [("r", "step")]


async def test_bare_pathlike(tmp_path: Path) -> None:
    wf = Workflow("app", db=tmp_path / "p.db")
    assert isinstance(wf.store, SQLiteStore)
    assert await run_one_step(wf) == 7
    assert stored_steps(tmp_path / "p.db") == [("r", "step")]


@pytest.mark.parametrize("name", ["jobs#1.db", "jobs?.db", "a%41.db"])
async def test_bare_path_with_url_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    wf = Workflow("app", db=name)
    assert await run_one_step(wf) == 7
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))
    assert files == [name]


async def test_memory_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore.from_url("sqlite://")
    assert store.path == ":memory:"
    wf = Workflow("app", db="sqlite://")
    assert isinstance(wf.store, SQLiteStore)
    assert await run_one_step(wf) == 7
    assert list(tmp_path.iterdir()) == []  # nothing was written to disk


async def test_memory_store_keeps_steps_while_open() -> None:
    store = SQLiteStore(":memory:")
    await store.setup()
    try:
        await store.set_step("r", "a", {"x": 1})
        assert await store.get_step("r", "a") == (True, {"x": 1})
        assert await store.load_steps("r") == {"a": {"x": 1}}
    finally:
        await store.close()


async def test_durability_full_option(db_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{db_path}?durability=full")
    assert store.durability == "full"
    await store.setup()
    try:
        assert store._db.fast.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        await store.close()


async def test_durability_normal_is_default(db_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{db_path}")
    assert store.durability == "normal"
    await store.setup()
    try:
        assert store._db.fast.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        await store.close()


async def test_mode_ro_option(db_path: Path) -> None:
    writer = SQLiteStore(db_path)
    await writer.setup()
    await writer.set_step("r", "a", 1)
    await writer.close()

    store = SQLiteStore.from_url(f"sqlite:///{db_path}?mode=ro")
    await store.setup()
    try:
        assert await store.get_step("r", "a") == (True, 1)
        with pytest.raises(StoreError, match="read-only"):
            await store.set_step("r", "b", 2)
    finally:
        await store.close()


def test_busy_timeout_option(db_path: Path) -> None:
    assert SQLiteStore.from_url(f"sqlite:///{db_path}?busy_timeout=2.5")._db.busy_timeout == 2.5
    assert SQLiteStore.from_url(f"sqlite:///{db_path}")._db.busy_timeout == 30.0


def test_options_combine(db_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{db_path}?durability=full&busy_timeout=3&mode=ro")
    assert store.durability == "full"
    assert store._db.busy_timeout == 3.0
    assert store._db.read_only


@pytest.mark.parametrize(
    "url",
    ["sqlite:///x.db?timeout=3", "sqlite:///x.db?durability=full&journal=off"],
)
def test_unknown_option_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        SQLiteStore.from_url(url)


def test_unknown_option_is_refused_through_workflow() -> None:
    with pytest.raises(ValueError, match="unknown"):
        Workflow("app", db="sqlite:///x.db?cache=shared")


@pytest.mark.parametrize("url", ["sqlite://somehost/x.db", "sqlite://db.example.com:5432/x"])
def test_host_in_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="host"):
        SQLiteStore.from_url(url)


def test_bad_durability_in_url_is_refused() -> None:
    with pytest.raises(ValueError, match="durability"):
        SQLiteStore.from_url("sqlite:///x.db?durability=sometimes")


def test_bad_durability_argument_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SQLiteStore(db_path, durability="bogus")  # type: ignore[arg-type]


def test_bad_busy_timeout_is_refused() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - float()'s own message
        SQLiteStore.from_url("sqlite:///x.db?busy_timeout=soon")


def test_constructing_opens_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    SQLiteStore("lazy.db")
    Workflow("app", db="sqlite:///lazy2.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["RO", "readonly", "r"])
def test_a_mode_other_than_ro_or_rw_is_refused(mode: str) -> None:
    # ?mode=RO used to open the file read-write (and migrate it) without a word.
    with pytest.raises(ValueError, match="mode must be 'ro' or 'rw'"):
        SQLiteStore.from_url(f"sqlite:///x.db?mode={mode}")


def test_mode_rw_is_read_write() -> None:
    assert SQLiteStore.from_url("sqlite:///x.db?mode=rw") is not None
