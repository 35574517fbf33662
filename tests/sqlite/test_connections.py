"""Connections: one long-lived one, replays in one query, durability, close, cancellation."""

import asyncio
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from durable import Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore, connection, sql

Raw = Callable[..., sqlite3.Connection]


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)

        return counted


async def test_one_connection_for_many_operations(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects, async_connects = Counter(), Counter()
    monkeypatch.setattr(sqlite3, "connect", connects.wrap(sqlite3.connect))
    monkeypatch.setattr(aiosqlite, "connect", async_connects.wrap(aiosqlite.connect))

    wf = Workflow("app", db=str(db_path), default_backoff=constant(0))

    @wf.task
    async def step(i: int) -> int:
        return i + 1

    @wf.workflow(id="run-{n}")
    async def flow(n: int) -> int:
        total = 0
        for i in range(3):
            total += await step(i, step_id=f"s{i}")
        return total + n

    try:
        assert await flow(0) == 6
        store = wf.store
        assert isinstance(store, SQLiteStore)
        fast = store._db._fast
        assert fast is not None
        assert connects.calls == 1

        results = await asyncio.gather(*(flow(n) for n in range(1, 31)))
        assert results == [6 + n for n in range(1, 31)]
        assert await flow(5) == 11  # a completed run: its recorded result
        assert await wf.complete("run-1", "ping", {"x": 1}) is True
        assert await store.get_signal("run-1", "ping") == (True, {"x": 1})
        assert len(await store.list_runs(limit=1000)) == 31
        assert await store.load_steps("run-3") == {"s0": 1, "s1": 2, "s2": 3}

        assert store._db._fast is fast
        assert connects.calls == 1  # the connection opened by setup, and no other
        assert async_connects.calls == 0
        assert store._db._patient is None  # nothing in one process ever had to wait
    finally:
        await wf.close()


async def test_replay_loads_all_steps_in_one_query(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(db_path)
    wf = Workflow("app", db=store, default_backoff=constant(0))
    executed: list[int] = []
    fail_at_end = [True]

    @wf.task
    async def step(i: int) -> dict[str, int]:
        executed.append(i)
        return {"i": i}

    @wf.workflow
    async def flow() -> int:
        total = 0
        for i in range(20):
            total += (await step(i))["i"]
        if fail_at_end[0]:
            raise RuntimeError("stop after the steps")
        return total

    try:
        with pytest.raises(RuntimeError):
            await flow.run("replay")
        assert executed == list(range(20))

        calls: dict[str, int] = {"load_steps": 0, "get_step": 0, "read": 0}

        def count(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                return await fn(*args, **kwargs)

            return counted

        monkeypatch.setattr(store, "load_steps", count("load_steps", store.load_steps))
        monkeypatch.setattr(store, "get_step", count("get_step", store.get_step))
        monkeypatch.setattr(store._db, "read", count("read", store._db.read))

        fail_at_end[0] = False
        assert await flow.run("replay") == sum(range(20))
        assert executed == list(range(20))  # every step replayed, none ran again
        assert calls["load_steps"] == 1
        assert calls["get_step"] == 0
        assert calls["read"] == 1  # the one query of load_steps
    finally:
        await wf.close()


async def test_replay_after_restart_loads_steps_in_one_query(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Workflow("app", db=str(db_path), default_backoff=constant(0))

    @first.task
    async def step(i: int) -> int:
        return i

    @first.workflow
    async def flow() -> int:
        for i in range(20):
            await step(i, step_id=f"s{i}")
        raise RuntimeError("crash after 20 steps")

    with pytest.raises(RuntimeError):
        await flow.run("r")
    await first.close()

    store = SQLiteStore(db_path)
    second = Workflow("app", db=store, default_backoff=constant(0))
    ran: list[int] = []

    @second.task(name="step")
    async def step2(i: int) -> int:
        ran.append(i)
        return i

    @second.workflow(name="flow")
    async def flow2() -> int:
        return sum([await step2(i, step_id=f"s{i}") for i in range(21)])

    gets: list[str] = []
    real_get_step = store.get_step

    async def get_step(run_id: str, step_id: str) -> tuple[bool, Any]:
        gets.append(step_id)
        return await real_get_step(run_id, step_id)

    monkeypatch.setattr(store, "get_step", get_step)
    try:
        assert await flow2.run("r") == sum(range(21))
        assert ran == [20]
        assert gets == []
    finally:
        await second.close()


async def test_a_long_run_loads_in_pages_with_every_step_intact(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    # Step ids that sort and quote awkwardly, and values json.dumps writes as it likes.
    values: dict[str, Any] = {f"step#{i}": {"i": i, "text": 'a "q" \\ é'} for i in range(300)}
    values[""] = "an empty step id"
    values["'; DROP TABLE steps; --"] = [1, None, 2.5]
    values["nan"] = float("nan")
    try:
        for step_id, value in values.items():
            await store.checkpoint_step("long", step_id, value)
        reads: list[str] = []
        real_read = store._db.read

        async def read(sql: str, params: Any = ()) -> Any:
            reads.append(sql)
            return await real_read(sql, params)

        monkeypatch.setattr(store._db, "read", read)
        loaded = dict(await store.load_steps("long"))

        assert math.isnan(loaded.pop("nan"))
        assert loaded == {k: v for k, v in values.items() if k != "nan"}
        pages = -(-len(values) // sql.LOAD_PAGE)  # ceil: a full last page needs one more read
        assert len(reads) in (pages, pages + 1)
        assert await store.load_steps("no-such-run") == {}
    finally:
        await store.close()


# -- durability="full" --------------------------------------------------------------------


async def test_durability_full_end_to_end(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, durability="full")
    wf = Workflow("app", db=store, default_backoff=constant(0))
    executed: list[int] = []
    fail = [True]

    @wf.task
    async def step(i: int) -> int:
        executed.append(i)
        return i * 10

    @wf.workflow
    async def flow() -> list[int]:
        values = [await step(i, step_id=f"s{i}") for i in range(3)]
        if fail[0]:
            raise ValueError("first attempt fails after its steps")
        return values

    try:
        with pytest.raises(ValueError, match="first attempt"):
            await flow.run("full")
        fail[0] = False
        assert await flow.run("full") == [0, 10, 20]  # replayed
        assert await flow.run("full") == [0, 10, 20]  # recorded result
        assert executed == [0, 1, 2]

        assert store._db.fast.execute("PRAGMA synchronous").fetchone()[0] == 2
        patient = store._db._patient
        assert patient is not None  # every commit went off the loop
        rows = await patient.execute_fetchall("PRAGMA synchronous")
        assert next(iter(rows))[0] == 2
    finally:
        await wf.close()

    conn = raw(db_path)
    assert conn.execute("SELECT count(*) FROM steps WHERE run_id = 'full'").fetchone() == (3,)
    assert conn.execute("SELECT status FROM runs WHERE run_id = 'full'").fetchone() == (
        "completed",
    )

    again = Workflow("app", db=SQLiteStore(db_path, durability="full"))

    @again.workflow(name="flow")
    async def flow_again() -> list[int]:
        raise AssertionError("a completed run must not run again")

    try:
        assert await flow_again.run("full") == [0, 10, 20]
    finally:
        await again.close()


# -- close --------------------------------------------------------------------------------


async def test_setup_after_close_works(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.setup()
    await store.set_step("r", "a", 1)
    first = store._db._fast
    await store.close()
    await store.close()  # twice is harmless

    await store.setup()
    try:
        assert store._db._fast is not None
        assert store._db._fast is not first
        assert await store.get_step("r", "a") == (True, 1)
        await store.set_step("r", "b", 2)
        assert await store.load_steps("r") == {"a": 1, "b": 2}
    finally:
        await store.close()


async def test_close_before_setup_is_harmless(db_path: Path) -> None:
    await SQLiteStore(db_path).close()
    assert not db_path.exists()


async def test_close_closes_both_connections(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, durability="full")
    await store.setup()
    await store.set_step("r", "a", 1)  # durability=full: commits on the patient connection
    assert store._db._patient is not None
    await store.close()
    assert store._db._fast is None
    assert store._db._patient is None
    # Nothing holds the file: an exclusive lock is granted at once.
    conn = raw(db_path, timeout=0)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("COMMIT")


async def test_workflow_usable_again_after_close(db_path: Path) -> None:
    wf = Workflow("app", db=str(db_path), default_backoff=constant(0))

    @wf.task
    async def step(n: int) -> int:
        return n

    @wf.workflow(id="r-{n}")
    async def flow(n: int) -> int:
        return await step(n)

    async with wf:
        assert await flow(1) == 1
    assert await flow(2) == 2
    await wf.close()
    assert await flow(1) == 1
    await wf.close()


async def test_durability_full_and_close_on_another_loop(db_path: Path) -> None:
    """A store set up, used and closed in one ``asyncio.run`` works again in the next."""

    def cycle(value: int) -> Any:
        async def go() -> Any:
            store = SQLiteStore(db_path, durability="full")
            await store.setup()
            await store.set_step("r", f"s{value}", value)
            steps = await store.load_steps("r")
            await store.close()
            return steps

        return asyncio.run(go())

    await asyncio.to_thread(cycle, 1)
    assert await asyncio.to_thread(cycle, 2) == {"s1": 1, "s2": 2}


# -- cancellation -------------------------------------------------------------------------


async def test_cancelled_checkpoint_leaves_no_transaction_open(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, durability="full")
    await store.setup()
    try:
        await store.set_step("r", "before", 0)
        for i in range(5):
            # Cancel at different points of the patient path: before the first hand-off,
            # and after 1..4 trips through the loop.
            task = asyncio.create_task(store.set_step("r", f"cancelled-{i}", i))
            for _ in range(i):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # Later writes work, and behind them every cancelled one has finished.
        await asyncio.wait_for(store.set_step("r", "after", 1), timeout=5)
        assert await store.get_step("r", "after") == (True, 1)
        assert await store.get_step("r", "before") == (True, 0)
        assert store._db._patient is not None
        assert not store._db._patient.in_transaction
        assert not store._db.fast.in_transaction
        # No lock is left behind: another connection can write without waiting.
        conn = raw(db_path, timeout=0)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO signals VALUES ('x', 'y', '1', 0)")
        conn.execute("COMMIT")
        assert await store.get_signal("x", "y") == (True, 1)
    finally:
        await store.close()


async def test_cancelled_workflow_during_checkpoint_resumes(db_path: Path, raw: Raw) -> None:
    store = SQLiteStore(db_path, durability="full")
    wf = Workflow("app", db=store, default_backoff=constant(0))
    executed: list[int] = []
    returned = asyncio.Event()

    @wf.task
    async def step(i: int) -> int:
        executed.append(i)
        if i == 2:
            returned.set()  # the next thing the run does is checkpoint this result
        return i

    @wf.workflow
    async def flow() -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(5)])

    try:
        task = asyncio.create_task(flow.run("cancel-me"))
        await returned.wait()
        task.cancel()  # the run is awaiting the checkpoint of s2 on the patient path
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await asyncio.wait_for(flow.run("cancel-me"), timeout=10) == 10
        # s0 and s1 never ran again; s2's checkpoint outcome was unknown (at most once more)
        assert executed[:3] == [0, 1, 2]
        assert executed[3:] in ([3, 4], [2, 3, 4])
        assert store._db._patient is not None
        assert not store._db._patient.in_transaction
        conn = raw(db_path, timeout=0)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
    finally:
        await wf.close()


# -- WAL checkpoints ----------------------------------------------------------------------


async def test_wal_stays_bounded_under_sustained_writes(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CHECKPOINT_EVERY", 1000)  # sizes below assume it
    store = SQLiteStore(db_path)
    wf = Workflow("app", db=store, default_backoff=constant(0))
    wal = db_path.with_name(db_path.name + "-wal")

    @wf.task
    async def step(i: int) -> int:
        await asyncio.sleep(0)  # a real task awaits I/O
        return i

    @wf.workflow(id="load-{n}")
    async def flow(n: int) -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(50)])

    try:
        await store.setup()
        for i in range(1000):
            await store.set_step("warm-up", f"s{i}", i)
        await asyncio.sleep(0.5)  # the first background checkpoint completes
        await store.set_step("warm-up", "restart", 0)
        first_thousand = wal.stat().st_size  # the WAL of ~1000 commits
        for batch in range(4):  # 4 x 40 workflows x (50 steps + claim + finish) commits
            results = await asyncio.gather(*(flow(batch * 40 + n) for n in range(40)))
            assert results == [sum(range(50))] * 40
        assert len(await store.list_runs(limit=1000)) == 160
        size = wal.stat().st_size
        assert size < 3 * first_thousand, (
            f"the WAL grew to {size // 1024} KiB ({size / first_thousand:.1f} x the WAL "
            "of the first 1000 commits) with checkpoints due every 1000 commits"
        )
    finally:
        await wf.close()


async def test_wal_is_reused_when_writes_pause(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "CHECKPOINT_EVERY", 1000)
    store = SQLiteStore(db_path)
    await store.setup()
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        sizes = []
        for burst in range(4):
            for i in range(1000):
                await store.set_step("r", f"b{burst}-{i}", i)
            sizes.append(wal.stat().st_size)
            await asyncio.sleep(0.3)  # the background checkpoint can finish
        assert sizes[-1] < 2 * sizes[0], [s // 1024 for s in sizes]
        assert len(await store.load_steps("r")) == 4000
    finally:
        await store.close()
