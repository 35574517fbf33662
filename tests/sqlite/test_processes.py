"""Several processes on one file: real subprocesses (tests/sqlite/worker.py), bounded in time."""

import asyncio
import itertools
import json
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from durable import StoreError, Workflow
from durable.backoff import constant
from durable_sqlite import SQLiteStore

Spawn = Callable[..., "subprocess.Popen[str]"]
Raw = Callable[..., sqlite3.Connection]

#: Seconds given to the workers to import everything before they start together.
START_DELAY = 2.0


async def read_line(proc: "subprocess.Popen[str]", timeout: float = 30.0) -> str:
    """The next line the process prints (without blocking the loop)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"worker exited (rc={proc.returncode}) without output: {err}")
    return line.strip()


async def wait_for_line(proc: "subprocess.Popen[str]", expected: str) -> None:
    while await read_line(proc) != expected:
        pass


def finish(proc: "subprocess.Popen[str]", timeout: float) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out, err


class LoopWatch:
    """Records the longest time the event loop did not get back to a ticking task."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.002)
            now = loop.time()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now


@contextmanager
def loop_watch() -> Iterator[LoopWatch]:
    watch = LoopWatch()
    task = asyncio.get_running_loop().create_task(watch._tick())
    try:
        yield watch
    finally:
        task.cancel()


async def ready_store(path: Path, **kwargs: Any) -> SQLiteStore:
    store = SQLiteStore(path, **kwargs)
    await store.setup()
    return store


# -- many writers -------------------------------------------------------------------------


@pytest.mark.slow
def test_four_processes_share_one_file(db_path: Path, spawn: Spawn, raw: Raw) -> None:
    processes, workflows, steps = 4, 50, 5
    t0 = time.time() + START_DELAY
    procs = [spawn("many", db_path, p, workflows, steps, t0) for p in range(processes)]
    timings: list[dict[str, Any]] = []
    for proc in procs:
        out, err = finish(proc, timeout=120)
        summary, timing = map(json.loads, out.strip().splitlines()[-2:])
        assert summary == {"completed": workflows, "errors": []}
        assert "locked" not in err.lower(), err
        assert "busy" not in err.lower(), err
        timings.append(timing)
    # The processes really wrote at the same time.
    assert max(t["began"] for t in timings) < min(t["ended"] for t in timings)
    assert any(t["waited"] for t in timings), "no write ever found the file busy"

    conn = raw(db_path)
    assert conn.execute("SELECT count(*) FROM steps").fetchone()[0] == processes * workflows * steps
    rows = conn.execute("SELECT status, count(*), sum(result) FROM runs GROUP BY status").fetchall()
    per_run = sum(i * i for i in range(steps))
    assert rows == [("completed", processes * workflows, processes * workflows * per_run)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_processes_opening_a_seed_file_at_once_migrate_it_once(
    seed_db: Path, seed_steps: dict[tuple[str, str], Any], spawn: Spawn, raw: Raw
) -> None:
    t0 = time.time() + START_DELAY
    procs = [spawn("inspect", seed_db, "seed-failed", t0) for _ in range(4)]
    expected = {step: value for (run, step), value in seed_steps.items() if run == "seed-failed"}
    for proc in procs:
        out, _ = finish(proc, timeout=60)
        assert json.loads(out.strip().splitlines()[-1]) == expected
    conn = raw(seed_db)
    assert conn.execute("SELECT count(*) FROM steps").fetchone()[0] == len(seed_steps)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- another process holds the write lock -------------------------------------------------


@pytest.mark.parametrize("how", ["set_step", "workflow"])
async def test_write_waits_for_a_lock_without_blocking_the_loop(
    db_path: Path, spawn: Spawn, how: str
) -> None:
    store = await ready_store(db_path)
    wf = Workflow("app", db=store, default_backoff=constant(0))

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow
    async def flow() -> int:
        return sum([await step(i, step_id=f"s{i}") for i in range(3)])

    try:
        await store.set_step("r", "before", 0)
        holder = spawn("hold", db_path, 0.3)
        await wait_for_line(holder, "LOCKED")
        with loop_watch() as watch:
            started = time.monotonic()
            # Readers do not wait for the writer.
            assert await store.get_step("r", "before") == (True, 0)
            assert time.monotonic() - started < 0.05
            if how == "set_step":
                await store.set_step("r", "during", 1)
            else:
                assert await flow.run("during") == 3
            waited = time.monotonic() - started
        finish(holder, timeout=10)

        assert waited > 0.15, "the write should have waited for the other process's lock"
        assert watch.ticks > 20
        assert watch.longest < 0.05, f"the event loop stalled for {watch.longest * 1000:.0f} ms"
        assert store._db._patient is not None  # the wait went off the loop
        if how == "set_step":
            assert await store.get_step("r", "during") == (True, 1)
        else:
            assert len(await store.load_steps("during")) == 3
        # Back to normal: writes after the lock are fast again.
        await store.set_step("r", "after", 2)
        assert await store.get_step("r", "after") == (True, 2)
    finally:
        await wf.close()


async def test_setup_waits_for_another_process(db_path: Path, spawn: Spawn) -> None:
    await (await ready_store(db_path)).close()
    holder = spawn("hold", db_path, 0.3)
    await wait_for_line(holder, "LOCKED")
    store = SQLiteStore(db_path)
    try:
        with loop_watch() as watch:
            await store.setup()
            await store.set_step("r", "a", 1)
        assert watch.longest < 0.05
        assert await store.get_step("r", "a") == (True, 1)
    finally:
        await store.close()
    finish(holder, timeout=10)


async def test_setup_of_a_new_file_waits_for_another_process(db_path: Path, spawn: Spawn) -> None:
    # The holder creates the file (rollback-journal mode) and keeps it write-locked
    # for 0.3 s: what another worker starting at the same moment on a new file does.
    # Switching such a file to WAL needs a lock SQLite's busy handler never waits for.
    holder = spawn("hold", db_path, 0.3)
    await wait_for_line(holder, "LOCKED")
    store = SQLiteStore(db_path)
    try:
        await store.setup()  # busy_timeout is 30 s: this should wait, then work
        await store.set_step("r", "a", 1)
        assert await store.get_step("r", "a") == (True, 1)
    finally:
        await store.close()
        finish(holder, timeout=10)


async def test_busy_timeout_bounds_the_wait(db_path: Path, spawn: Spawn) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{db_path}?busy_timeout=0.2")
    await store.setup()
    try:
        holder = spawn("hold", db_path, 1.5)
        await wait_for_line(holder, "LOCKED")
        with loop_watch() as watch:
            started = time.monotonic()
            with pytest.raises(StoreError, match="locked") as info:
                await store.set_step("r", "a", 1)
            waited = time.monotonic() - started
        assert str(db_path) in str(info.value)
        assert 0.15 < waited < 1.2
        assert watch.longest < 0.05
        finish(holder, timeout=10)
        assert await store.get_step("r", "a") == (False, None)
        await store.set_step("r", "a", 1)  # the lock is gone: it works now
        assert await store.get_step("r", "a") == (True, 1)
    finally:
        await store.close()


# -- one run id, two processes ------------------------------------------------------------


@pytest.mark.slow
def test_same_run_id_in_two_processes_runs_each_step_once(
    db_path: Path, tmp_path: Path, spawn: Spawn
) -> None:
    ledger = tmp_path / "ledger.txt"
    steps = 5
    t0 = time.time() + START_DELAY
    procs = [spawn("same", db_path, ledger, "shared-run", steps, t0) for _ in range(2)]
    results = [json.loads(finish(proc, timeout=60)[0].strip().splitlines()[-1]) for proc in procs]

    assert results[0] == results[1]  # both callers got the one outcome

    events: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    for line in ledger.read_text().splitlines():
        what, step, pid, at = line.split()
        events[step].append((what, int(pid), float(at)))
    assert sorted(events) == [f"step-{i}" for i in range(steps)]

    intervals: list[tuple[float, float, int, str]] = []
    for step, seen in events.items():
        assert [what for what, _, _ in seen] == ["start", "end"], f"{step} ran {seen}"
        (_, pid, begin), (_, end_pid, end) = seen
        assert pid == end_pid
        intervals.append((begin, end, pid, step))
    intervals.sort()
    for (_, end, pid, step), (begin, _, other_pid, other) in itertools.pairwise(intervals):
        assert end <= begin, f"{step} ({pid}) overlapped {other} ({other_pid})"
    # Each step returned the pid that ran it, and the recorded run says the same.
    assert results[0] == [pid for _, _, pid, _ in intervals]
    assert {proc.pid for proc in procs} >= set(results[0])


# -- signals across processes -------------------------------------------------------------


async def test_signal_from_another_process_arrives_within_its_poll(
    db_path: Path, spawn: Spawn
) -> None:
    store = await ready_store(db_path)  # create the file before the worker opens it
    await store.close()
    waiter = spawn("signal", db_path, "sig-run")
    await wait_for_line(waiter, "READY")
    await asyncio.sleep(0.3)  # the run is now parked in wf.signal("go", poll=0.2)

    wf = Workflow("sender", db=str(db_path))
    try:
        payload = {"approved": True, "by": "test", "n": [0, None, ""]}
        sent = time.time()
        assert await wf.complete("sig-run", "go", payload) is True
        got = (await read_line(waiter, timeout=10)).split(" ", 2)
        assert got[0] == "GOT"
        latency = float(got[1]) - sent
        assert json.loads(got[2]) == payload
        assert latency < 1.0, f"the signal took {latency:.2f} s to arrive"
        finish(waiter, timeout=10)

        assert await wf.complete("sig-run", "go", "second") is False
        record = await wf.get_run("sig-run")
        assert record is not None
        assert record.status == "completed"
        assert record.result == payload
    finally:
        await wf.close()


# -- exiting without close ----------------------------------------------------------------


def test_unclosed_store_does_not_keep_the_process_alive(db_path: Path, spawn: Spawn) -> None:
    started = time.monotonic()
    proc = spawn("noclose", db_path)
    try:
        out, _ = finish(proc, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("a script that never closed its store did not exit within 20 s")
    elapsed = time.monotonic() - started
    assert "DONE 3" in out
    assert elapsed < 5.0, f"the script took {elapsed:.1f} s to exit"
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("completed",)]
    finally:
        conn.close()
