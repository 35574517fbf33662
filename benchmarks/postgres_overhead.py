"""The PostgreSQL store against raw asyncpg on the same server, measured in the same run.

    python benchmarks/postgres_overhead.py                  # 7 repetitions, ~2-3 minutes
    python benchmarks/postgres_overhead.py --quick          # small sizes, 1 repetition
    python benchmarks/postgres_overhead.py --reps 7 --only A,D --dsn postgresql://...
    python benchmarks/postgres_overhead.py --profile A      # pool waits, cProfile by area
    python benchmarks/postgres_overhead.py --decompose      # A's step taken apart
    python benchmarks/run.py --only PG                      # the same cases through run.py

Needs a PostgreSQL server (default ``postgresql://postgres@127.0.0.1:5432/test``, or
``$DURABLE_POSTGRES_DSN``), ``asyncpg`` and, for durable's rows, ``durable-postgres``.
Every case runs in its own interpreter (``harness.spawn``), in a schema of its own
(``durable_bench_<hex>_<n>``) dropped when the case ends; whatever a crashed case left
is dropped at the end of the run. Repetitions are interleaved across variants and the
table shows medians, as in ``run.py``. Until ``durable_postgres.PostgresStore`` is the
real store, only the floors run.

Workloads and floors (every floor on **one** asyncpg connection, autocommit, each
statement prepared once and then one round trip):

- ``PG-A``: one workflow of 2,000 sequential steps. Floor: one ``INSERT`` per step, a
  transaction of its own (the server commits it: INSERT + COMMIT in one round trip);
  the step's result ``json.dumps``-ed, as any store must. Target: ≤ 1.5× per step.
- ``PG-C200``, ``PG-C1000``: 200 / 1,000 workflows of 5 steps at once (``gather``).
  Floor: the same workflows writing 7 times each (run row, 5 steps, outcome) through
  the one connection (a lock: a connection runs one statement at a time). Target: at
  least the floor's steps/s, zero errors.
- ``PG-D``: the 2,000 recorded steps of a run that failed after its last step, replayed
  by a fresh ``Workflow`` (a new store, nothing cached). Floor: one ``SELECT`` of one
  row by its key per step, and a ``json.loads``. Target: ≤ 2× per step; the replay
  must run no step body, load the run's steps once and read no single step.

durable's rows use ``PostgresStore(dsn, schema=...)`` with its own pool (1-10
connections), through ``workloads.make_app``: the step and workflow of ``run.py``.
Rows marked ``info`` are not targets: a ``BEGIN``/``INSERT``/``COMMIT`` floor (three
round trips), a pool of 10 connections for C, one ``SELECT`` of the whole run for D.

Each result's ``checks`` (``--json``) hold what the measured part did: the socket
writes of the process (one per round trip; fewer per step when statements are batched
or pipelined), the process's CPU time per step, and its event loop's turns per step
(less the stall ticker's own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import math
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
from harness import Env, Outcome, Result, spawn
from report import Row, Target, format_table, format_targets

if TYPE_CHECKING:
    from durable import Store


class Connection(Protocol):
    """What the floors use of ``asyncpg.Connection``: typed here, as the benchmark's
    environment may lack ``asyncpg-stubs`` (asyncpg ships no hints of its own)."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    def get_reset_query(self) -> str: ...
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...
    async def close(self) -> None: ...


class Pool(Protocol):
    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...
    async def close(self) -> None: ...


PG: Any = asyncpg  # connect() and create_pool(), typed at their use

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "durable_bench_"
WARMUP = 5
STEPS_C = 5

#: Targets: the most times the floor's cost per step (A, D); C wants ≥ 1× its throughput.
A_MOST = 1.5
D_MOST = 2.0

TABLES = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE steps (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, result TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1, created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
"""
INSERT_RUN = "INSERT INTO runs (run_id, status, updated_at) VALUES ($1, 'running', $2)"
INSERT_STEP = (
    "INSERT INTO steps (run_id, step_id, result, attempt, created_at) VALUES ($1, $2, $3, 1, $4)"
)
FINISH_RUN = "UPDATE runs SET status = 'completed', updated_at = $1 WHERE run_id = $2"
SELECT_STEP = "SELECT result FROM steps WHERE run_id = $1 AND step_id = $2"
SELECT_STEPS = "SELECT step_id, result FROM steps WHERE run_id = $1"


# -- what every case shares ---------------------------------------------------------------


class WireCounter:
    """Counts the socket writes of this process's asyncio transports (asyncpg's only).

    asyncpg writes each batch of protocol messages it sends in one ``transport.write``:
    a statement on a prepared statement is one write and one round trip, statements
    pipelined together share one write.
    """

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0
        self._cls: Any = None
        self._original: Any = None

    def install(self) -> None:
        from asyncio import selector_events

        cls: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
        original = cls.write

        def write(transport: Any, data: Any) -> None:
            self.writes += 1
            self.bytes += len(data)
            original(transport, data)

        self._cls, self._original = cls, original
        cls.write = write

    def reset(self) -> None:
        self.writes = self.bytes = 0

    def uninstall(self) -> None:
        if self._cls is not None:
            self._cls.write = self._original
            self._cls = None


@contextlib.asynccontextmanager
async def counted(env: Env, wire: WireCounter) -> AsyncGenerator[None]:
    """``env.measure()``, with the socket writes counted inside it only."""
    loop: Any = asyncio.get_running_loop()
    run_once = loop._run_once
    turns = [0]

    def counting_run_once() -> None:
        turns[0] += 1
        run_once()

    profiler: cProfile.Profile | None = env.extra.get("_profiler")
    async with env.measure():
        wire.reset()
        loop._run_once = counting_run_once  # an instance attribute, undone below
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.disable()
            env.extra["_cpu"] = time.process_time() - cpu
            del loop._run_once
            env.extra["_writes"] = wire.writes
            # Less the ticker's own turns (its callback, its task's wake-ups): ~1 per ms.
            ticks = len(env.ticker.stalls) + len(env.ticker.task_stalls)
            env.extra["_turns"] = max(0, turns[0] - ticks)


def wire_checks(env: Env, steps: int, **more: Any) -> dict[str, Any]:
    writes: int = env.extra.get("_writes", 0)
    cpu: float = env.extra.get("_cpu", math.nan)
    return {
        "socket_writes": writes,
        "writes_per_step": round(writes / steps, 3),
        "cpu_us_per_step": round(cpu / steps * 1e6, 1),  # this process's CPU, all threads
        "loop_turns_per_step": round(env.extra.get("_turns", 0) / steps, 2),  # ticker's less
        **more,
    }


class PoolStats:
    """How long ``asyncpg.Pool.acquire`` waited for a free connection, and how long the
    release took (asyncpg's reset query, unless the pool was made with ``reset=``), for
    every pool of this process (``--profile``)."""

    def __init__(self) -> None:
        self.acquires = self.waited = 0
        self.wait_s = self.release_s = 0.0
        self._undo: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from asyncpg import pool as pools

        stats = self
        pool_cls: Any = pools.Pool
        holder_cls: Any = pools.PoolConnectionHolder
        acquire, release = pool_cls._acquire, holder_cls.release

        async def timed_acquire(pool: Any, *args: Any) -> Any:
            stats.acquires += 1
            stats.waited += pool._queue.empty()
            started = time.perf_counter()
            try:
                return await acquire(pool, *args)
            finally:
                stats.wait_s += time.perf_counter() - started

        async def timed_release(holder: Any, *args: Any) -> None:
            started = time.perf_counter()
            try:
                await release(holder, *args)
            finally:
                stats.release_s += time.perf_counter() - started

        self._undo = [(pool_cls, "_acquire", acquire), (holder_cls, "release", release)]
        pool_cls._acquire, holder_cls.release = timed_acquire, timed_release

    def uninstall(self) -> None:
        for cls, name, original in self._undo:
            setattr(cls, name, original)

    def summary(self, steps: int) -> str:
        each = max(self.acquires, 1)
        return (
            f"pool: {self.acquires} acquires ({self.acquires / steps:.2f} per step), "
            f"{self.waited} found no free connection; waiting in acquire {self.wait_s * 1e3:.0f} "
            f"ms in all ({self.wait_s / each * 1e6:.0f} µs each), releasing "
            f"(and its reset, if any) {self.release_s * 1e3:.0f} ms "
            f"({self.release_s / each * 1e6:.0f} µs each)"
        )


async def plain_step(i: int) -> dict[str, Any]:
    """The trivial step of every workload (the same as ``floors.plain_step``)."""
    return {"i": i, "ok": True}


async def connect(env: Env) -> Connection:
    """One connection whose ``search_path`` is the case's schema."""
    conn: Connection = await PG.connect(
        env.extra["dsn"], server_settings={"search_path": env.extra["schema"]}
    )
    return conn


@contextlib.asynccontextmanager
async def schema_of_case(env: Env, *, tables: bool) -> AsyncGenerator[None]:
    """The case's schema, with the floors' tables if ``tables``; dropped afterwards."""
    schema = env.extra["schema"]
    admin: Connection = await PG.connect(env.extra["dsn"])
    try:
        if tables:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
            await admin.execute(f'SET search_path = "{schema}"; {TABLES}')
        yield
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


# -- the floors: raw asyncpg on one connection ---------------------------------------------


async def write_steps(conn: Connection, run_id: str, steps: int) -> None:
    for i in range(steps):
        result = await plain_step(i)
        await conn.execute(INSERT_STEP, run_id, f"step#{i}", json.dumps(result), time.time())


async def write_steps_tx(conn: Connection, run_id: str, steps: int) -> None:
    for i in range(steps):
        result = await plain_step(i)
        async with conn.transaction():
            await conn.execute(INSERT_STEP, run_id, f"step#{i}", json.dumps(result), time.time())


async def _sequential_floor(
    env: Env, write: Callable[[Connection, str, int], Coroutine[Any, Any, None]]
) -> Outcome:
    wire = WireCounter()
    async with schema_of_case(env, tables=True):
        conn = await connect(env)
        try:
            await write(conn, "warm", WARMUP)
            wire.install()
            async with counted(env, wire):
                await write(conn, "a", env.size)
        finally:
            wire.uninstall()
            await conn.close()
    return Outcome(steps=env.size, workflows=1, checks=wire_checks(env, env.size))


async def sequential_floor(env: Env) -> Outcome:
    """A's floor: one autocommit INSERT per step (INSERT + COMMIT, one round trip)."""
    return await _sequential_floor(env, write_steps)


async def sequential_floor_tx(env: Env) -> Outcome:
    """A, info: BEGIN / INSERT / COMMIT per step, three round trips."""
    return await _sequential_floor(env, write_steps_tx)


class OneConnection:
    """Writes of many tasks through one connection, one statement at a time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    async def write(self, sql: str, *args: Any) -> None:
        async with self.lock:
            await self.conn.execute(sql, *args)


class PoolWriter:
    """Writes of many tasks through a pool, each taking a connection for one statement."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def write(self, sql: str, *args: Any) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(sql, *args)


async def flow_writes(writer: OneConnection | PoolWriter, run_id: str, steps: int) -> int:
    """A workflow's writes: its run record, one per step, its outcome."""
    await writer.write(INSERT_RUN, run_id, time.time())
    for i in range(steps):
        result = await plain_step(i)
        await writer.write(INSERT_STEP, run_id, f"step#{i}", json.dumps(result), time.time())
    await writer.write(FINISH_RUN, time.time(), run_id)
    return steps


async def _concurrent_floor(env: Env, writer: OneConnection | PoolWriter) -> Outcome:
    await flow_writes(writer, "warm", STEPS_C)
    wire = WireCounter()
    wire.install()
    try:
        async with counted(env, wire):
            results = await asyncio.gather(
                *(flow_writes(writer, f"c-{w}", STEPS_C) for w in range(env.size)),
                return_exceptions=True,
            )
    finally:
        wire.uninstall()
    errors = sum(1 for r in results if isinstance(r, BaseException))
    steps = env.size * STEPS_C
    checks = wire_checks(env, steps, writes_per_wf=2 + STEPS_C)
    return Outcome(steps=steps, workflows=env.size, errors=errors, checks=checks)


async def concurrent_floor(env: Env) -> Outcome:
    """C's floor: the workflows at once, 7 writes each, one connection."""
    async with schema_of_case(env, tables=True):
        conn = await connect(env)
        try:
            return await _concurrent_floor(env, OneConnection(conn))
        finally:
            await conn.close()


async def concurrent_pool(env: Env) -> Outcome:
    """C, info: the same writes through a pool of 10 connections."""
    async with schema_of_case(env, tables=True):
        pool: Pool = await PG.create_pool(
            env.extra["dsn"],
            min_size=10,
            max_size=10,
            server_settings={"search_path": env.extra["schema"]},
        )
        try:
            return await _concurrent_floor(env, PoolWriter(pool))
        finally:
            await pool.close()


async def _recorded_floor(env: Env) -> Connection:
    """The floors' tables holding the warm-up run and the run to read; a new connection."""
    conn = await connect(env)
    rows = [
        (run_id, f"step#{i}", json.dumps(await plain_step(i)), time.time())
        for run_id, steps in (("warm", WARMUP), ("replay", env.size))
        for i in range(steps)
    ]
    await conn.executemany(INSERT_STEP, rows)
    await conn.close()
    return await connect(env)


async def read_floor(env: Env) -> Outcome:
    """D's floor: per step one SELECT of its row by key (run_id, step_id) + json.loads."""

    async def read(conn: Connection, run_id: str, steps: int) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for i in range(steps):
            step_id = f"step#{i}"
            values[step_id] = json.loads(await conn.fetchval(SELECT_STEP, run_id, step_id))
        return values

    wire = WireCounter()
    async with schema_of_case(env, tables=True):
        conn = await _recorded_floor(env)
        try:
            await read(conn, "warm", WARMUP)
            wire.install()
            async with counted(env, wire):
                values = await read(conn, "replay", env.size)
        finally:
            wire.uninstall()
            await conn.close()
    checks = wire_checks(env, env.size, rows=len(values))
    return Outcome(steps=env.size, workflows=1, checks=checks)


async def read_floor_bulk(env: Env) -> Outcome:
    """D, info: one SELECT of the run's rows + json.loads of each."""

    async def read(conn: Connection, run_id: str) -> dict[str, Any]:
        rows = await conn.fetch(SELECT_STEPS, run_id)
        return {row["step_id"]: json.loads(row["result"]) for row in rows}

    wire = WireCounter()
    async with schema_of_case(env, tables=True):
        conn = await _recorded_floor(env)
        try:
            await read(conn, "warm")
            wire.install()
            async with counted(env, wire):
                values = await read(conn, "replay")
        finally:
            wire.uninstall()
            await conn.close()
    checks = wire_checks(env, env.size, rows=len(values))
    return Outcome(steps=env.size, workflows=1, checks=checks)


# -- durable on the PostgreSQL store ------------------------------------------------------


def store_class() -> type[Store] | None:
    """``durable_postgres.PostgresStore`` once it is the real store (not a placeholder)."""
    try:
        from durable_postgres import PostgresStore
    except ImportError:
        return None
    cls: type[Store] = PostgresStore
    return cls if cls.__module__.startswith("durable_postgres") else None


def counting_store(env: Env) -> Store:
    """A fresh PostgresStore on the case's schema, counting how it reads steps."""
    base = store_class()
    if base is None:
        raise RuntimeError("durable_postgres.PostgresStore is not the PostgreSQL store yet")

    class CountingPostgresStore(base):  # type: ignore[valid-type,misc]
        loads = 0
        gets = 0

        async def load_steps(self, run_id: str) -> Mapping[str, Any] | None:
            self.loads += 1
            steps: Mapping[str, Any] | None = await super().load_steps(run_id)
            return steps

        async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
            self.gets += 1
            found: tuple[bool, Any] = await super().get_step(run_id, step_id)
            return found

    factory: Any = CountingPostgresStore
    store: Store = factory(env.extra["dsn"], schema=env.extra["schema"])
    return store


async def sequential_durable(env: Env) -> Outcome:
    """A: one workflow of ``size`` sequential steps on the PostgreSQL store."""
    from workloads import make_app

    wire = WireCounter()
    async with schema_of_case(env, tables=False):
        app = make_app(counting_store(env))
        async with app.wf:
            await app.flow("warm", WARMUP)
            wire.install()
            try:
                async with counted(env, wire):
                    result = await app.flow("a", env.size)
            finally:
                wire.uninstall()
    checks = wire_checks(env, env.size)
    return Outcome(steps=env.size, workflows=1, errors=int(result != env.size), checks=checks)


async def concurrent_durable(env: Env) -> Outcome:
    """C: ``size`` workflows of 5 steps at once on the PostgreSQL store."""
    from workloads import make_app

    wire = WireCounter()
    async with schema_of_case(env, tables=False):
        app = make_app(counting_store(env))
        async with app.wf:
            await app.flow("warm", STEPS_C)
            wire.install()
            try:
                async with counted(env, wire):
                    results = await asyncio.gather(
                        *(app.flow(f"c-{w}", STEPS_C) for w in range(env.size)),
                        return_exceptions=True,
                    )
            finally:
                wire.uninstall()
    errors = [r for r in results if r != STEPS_C]
    steps = env.size * STEPS_C
    checks = wire_checks(env, steps, first_error=repr(errors[0])[:300] if errors else None)
    return Outcome(steps=steps, workflows=env.size, errors=len(errors), checks=checks)


async def replay_durable(env: Env) -> Outcome:
    """D: a fresh Workflow replays a failed run of ``size`` recorded steps."""
    from workloads import make_app

    wire = WireCounter()
    async with schema_of_case(env, tables=False):
        first = make_app(counting_store(env), fail=True)
        async with first.wf:
            for key, steps in (("warm", WARMUP), ("replay", env.size)):
                with contextlib.suppress(RuntimeError):
                    await first.flow(key, steps)
        recorded = first.executed[0]
        store: Any = counting_store(env)  # new Workflow and store: nothing cached
        app = make_app(store)
        async with app.wf:
            await app.flow("warm", WARMUP)  # the warm-up is a replay too
            app.executed[0] = store.loads = store.gets = 0
            wire.install()
            try:
                async with counted(env, wire):
                    result = await app.flow("replay", env.size)
            finally:
                wire.uninstall()
            record = await app.wf.get_run(app.flow.run_id_for("replay", env.size))
    checks: dict[str, Any] = {
        "recorded_steps": recorded - WARMUP,
        "steps_executed": app.executed[0],
        "load_queries": store.loads,
        "get_step_queries": store.gets,
        "status": None if record is None else record.status,
    }
    expected: dict[str, Any] = {
        "recorded_steps": env.size,
        "steps_executed": 0,
        "load_queries": 1,
        "get_step_queries": 0,
        "status": "completed",
    }
    ok = result == env.size and all(checks[key] == value for key, value in expected.items())
    checks = wire_checks(env, env.size, **checks)
    return Outcome(steps=env.size, workflows=1, errors=int(not ok), checks=checks)


# -- the workloads, the run and the targets -----------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # module:function
    role: str  # "durable", "floor" or "info"


@dataclass(frozen=True)
class PgWorkload:
    key: str
    title: str
    size: int
    quick_size: int
    cases: tuple[Case, ...]


HERE_MODULE = "postgres_overhead"
A_FLOOR = "asyncpg floor"
C_FLOOR = "asyncpg 1-conn floor"
D_FLOOR = "asyncpg read floor"
WORKLOADS: tuple[PgWorkload, ...] = (
    PgWorkload("PG-A", "one workflow of {n:,} sequential steps", 2000, 200, (
        Case("durable", f"{HERE_MODULE}:sequential_durable", "durable"),
        Case(A_FLOOR, f"{HERE_MODULE}:sequential_floor", "floor"),
        Case("asyncpg 3-statement tx", f"{HERE_MODULE}:sequential_floor_tx", "info"),
    )),
    PgWorkload("PG-C200", "{n:,} workflows of 5 steps at once (gather)", 200, 50, (
        Case("durable", f"{HERE_MODULE}:concurrent_durable", "durable"),
        Case(C_FLOOR, f"{HERE_MODULE}:concurrent_floor", "floor"),
        Case("asyncpg pool of 10", f"{HERE_MODULE}:concurrent_pool", "info"),
    )),
    PgWorkload("PG-C1000", "{n:,} workflows of 5 steps at once (gather)", 1000, 200, (
        Case("durable", f"{HERE_MODULE}:concurrent_durable", "durable"),
        Case(C_FLOOR, f"{HERE_MODULE}:concurrent_floor", "floor"),
        Case("asyncpg pool of 10", f"{HERE_MODULE}:concurrent_pool", "info"),
    )),
    PgWorkload("PG-D", "A's {n:,} recorded steps replayed by a fresh Workflow", 2000, 200, (
        Case("durable replay", f"{HERE_MODULE}:replay_durable", "durable"),
        Case(D_FLOOR, f"{HERE_MODULE}:read_floor", "floor"),
        Case("asyncpg read, whole run", f"{HERE_MODULE}:read_floor_bulk", "info"),
    )),
)  # fmt: skip
KEYS = [w.key for w in WORKLOADS]


def select_keys(only: str | None) -> list[str]:
    """Workload keys by prefix, with or without ``PG-``: ``A``, ``C`` (both C), ``PG-D``."""
    if not only:
        return list(KEYS)
    prefixes = [_bare(p) for p in only.split(",") if p.strip()]
    keys = [k for k in KEYS if any(_bare(k).startswith(p) for p in prefixes)]
    if not keys:
        raise SystemExit(f"--only {only!r} selects nothing; workloads: {', '.join(KEYS)}")
    return keys


def _bare(key: str) -> str:
    """``PG-C1000`` -> ``c1000``; ``PG`` -> ``""`` (a prefix of every key)."""
    return key.strip().lower().removeprefix("pg").removeprefix("-")


def check_server(dsn: str) -> str:
    """The server's version line, or exit with why it cannot be reached."""
    try:
        return asyncio.run(server_info(dsn))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        from durable.urls import mask_url  # the password, if any, is not printed

        raise SystemExit(f"PostgreSQL is not reachable at {mask_url(dsn)}: {exc}") from exc


async def server_info(dsn: str) -> str:
    conn: Connection = await PG.connect(dsn, timeout=10)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        sync: str = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {version} (synchronous_commit={sync})"


async def drop_schemas(dsn: str, prefix: str) -> int:
    """Drop every schema named ``prefix...`` (what crashed cases left behind)."""
    conn: Connection = await PG.connect(dsn, timeout=10)
    try:
        names = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
        )
        for row in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{row["nspname"]}" CASCADE')
    finally:
        await conn.close()
    return len(names)


def run_cases(keys: Sequence[str], quick: bool, reps: int, dsn: str) -> list[Row]:
    """Every case of the selected workloads, ``reps`` times, interleaved; the durable
    ones only once the store exists. Drops the run's schemas at the end."""
    with_store = store_class() is not None
    prefix = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:8]}_"
    plan = [
        (w, c, Row(w.key, c.name, c.role))
        for w in WORKLOADS
        if w.key in keys
        for c in w.cases
        if with_store or c.role != "durable"
    ]
    serial = 0
    try:
        for rep in range(reps):
            print(f"postgres repetition {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
            for workload, case, row in plan:
                serial += 1
                name = f"{workload.key}/{case.name}"
                extra = {"dsn": dsn, "schema": f"{prefix}{serial}"}
                size = workload.quick_size if quick else workload.size
                try:
                    row.results.append(spawn(name, case.target, size, extra))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"{name} crashed: {exc}", file=sys.stderr, flush=True)
                    row.crashes.append(_last_line(str(exc)))
    finally:
        left = asyncio.run(drop_schemas(dsn, prefix))
        if left:
            print(f"dropped {left} schema(s) left by crashed cases", file=sys.stderr)
    return [row for _, _, row in plan]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _row(rows: Sequence[Row], workload: str, variant: str) -> Row | None:
    for row in rows:
        if row.workload == workload and row.variant == variant and row.results:
            return row
    return None


def _writes(row: Row) -> str:
    per_step = sorted(r.checks.get("writes_per_step", float("nan")) for r in row.results)
    return f"{per_step[len(per_step) // 2]:.2f}" if per_step else "-"


def _paired(row: Row, floor: Row, cost: Callable[[Result], float]) -> str:
    """The ratio of each repetition to the floor's of the same repetition (they ran one
    after the other), as a range: steadier than the medians when the load changes."""
    if len(row.results) != len(floor.results) or len(row.results) < 2:
        return ""
    ratios = sorted(cost(r) / cost(f) for r, f in zip(row.results, floor.results, strict=True))
    return f" (repetition by repetition {ratios[0]:.2f}-{ratios[-1]:.2f})"


def _per_step(result: Result) -> float:
    return result.us_per_step


def _step_time(result: Result) -> float:  # the inverse of steps/s: time per step
    return result.elapsed_s / result.steps


def evaluate(rows: Sequence[Row]) -> list[Target]:
    """The issue's three speed targets (A, C at 200 and 1,000, D), for what was measured."""
    targets = [
        Target(
            f"{row.workload} {row.variant}: every run completes",
            False,
            f"{len(row.crashes)} run(s) crashed; the last: {row.crashes[-1]}",
        )
        for row in rows
        if row.crashes
    ]
    a, a_floor = _row(rows, "PG-A", "durable"), _row(rows, "PG-A", A_FLOOR)
    if a and a_floor:
        ratio = a.us_per_step / a_floor.us_per_step
        targets.append(Target(
            f"PG-A: µs/step ≤ {A_MOST:g}× asyncpg's one INSERT + COMMIT per step "
            "(one connection, one round trip)",
            ratio <= A_MOST and a.errors == 0,
            f"{a.us_per_step:.1f} vs {a_floor.us_per_step:.1f} µs/step = {ratio:.2f}×"
            f"{_paired(a, a_floor, _per_step)}; "
            f"socket writes per step {_writes(a)} vs {_writes(a_floor)}; {a.errors} errors",
        ))  # fmt: skip
    for key in ("PG-C200", "PG-C1000"):
        c, c_floor = _row(rows, key, "durable"), _row(rows, key, C_FLOOR)
        if c and c_floor:
            share = c.steps_per_s / c_floor.steps_per_s
            # The stricter reading of "the floor": A's, one INSERT + COMMIT per step and
            # nothing else (no run rows), when A ran too.
            strict = (
                f"; {c.steps_per_s / a_floor.steps_per_s:.2f}× A's floor "
                f"({a_floor.steps_per_s:,.0f} steps/s, one INSERT per step)"
                if a_floor
                else ""
            )
            errors = [r.checks["first_error"] for r in c.results if r.checks.get("first_error")]
            first = errors[0] if errors else None
            targets.append(Target(
                f"{key}: steps/s ≥ asyncpg on one connection (7 writes per workflow), "
                "zero errors",
                share >= 1 and c.errors == 0,
                f"{c.steps_per_s:,.0f} vs {c_floor.steps_per_s:,.0f} steps/s = {share:.2f}×"
                f"{_paired(c_floor, c, _step_time)}{strict}; "
                f"socket writes per step {_writes(c)} vs {_writes(c_floor)}; "
                f"{c.errors} errors"
                + (f" (first: {first})" if first else ""),
            ))  # fmt: skip
    d, d_floor = _row(rows, "PG-D", "durable replay"), _row(rows, "PG-D", D_FLOOR)
    if d and d_floor:
        ratio = d.us_per_step / d_floor.us_per_step
        checks = d.results[-1].checks
        targets.append(Target(
            f"PG-D: replay µs/step ≤ {D_MOST:g}× asyncpg's SELECT of one row by key + json.loads",
            ratio <= D_MOST and d.errors == 0,
            f"{d.us_per_step:.2f} vs {d_floor.us_per_step:.2f} µs/step = {ratio:.2f}×"
            f"{_paired(d, d_floor, _per_step)}; "
            f"executed {checks.get('steps_executed')} steps, {checks.get('load_queries')} "
            f"load, {checks.get('get_step_queries')} single-step reads, "
            f"{checks.get('socket_writes')} socket writes; run {checks.get('status')}",
        ))  # fmt: skip
    return targets


def versions(server: str) -> str:
    return f"Python {sys.version.split()[0]}, asyncpg {asyncpg.__version__}, {server}"


def describe(keys: Sequence[str], quick: bool) -> list[str]:
    """One line per selected workload, for the header."""
    return [
        f"  {w.key:8} {w.title.format(n=w.quick_size if quick else w.size)} (PostgreSQL)"
        for w in WORKLOADS
        if w.key in keys
    ]


def table(rows: Sequence[Row]) -> str:
    """The table, and why there are no durable rows if there are none."""
    text = format_table(rows)
    if not any(r.role == "durable" for r in rows):
        text += "\n(floors only: durable_postgres.PostgresStore is not the store yet)"
    return text


@dataclass
class Measured:
    """One run of the selected PostgreSQL workloads: what ``main`` and ``run.py`` print."""

    header: list[str]  # the workloads, then the versions
    rows: list[Row]
    targets: list[Target]

    @property
    def table(self) -> str:
        return table(self.rows)


def measure(only: str | None, quick: bool, reps: int, dsn: str) -> Measured:
    """Check the server, run the selected workloads' cases and judge them."""
    keys = select_keys(only)
    server = check_server(dsn)
    rows = run_cases(keys, quick, reps, dsn)
    header = [*describe(keys, quick), f"  ({versions(server)})"]
    return Measured(header, rows, evaluate(rows))


# -- profiling one durable case -----------------------------------------------------------


def profile(key: str, dsn: str, quick: bool, top: int) -> None:
    """Run one workload's durable case and its floor in this process: first with the
    pool's waits timed, then under cProfile (the measured part only): own time per step
    by area and the functions with the most of it."""
    workload = next(w for w in WORKLOADS if w.key == key)
    size = workload.quick_size if quick else workload.size
    for case in workload.cases:
        if case.role == "info" or (case.role == "durable" and store_class() is None):
            continue
        module, _, function = case.target.partition(":")
        __import__(module)
        func: Callable[[Env], Coroutine[Any, Any, Outcome]] = getattr(sys.modules[module], function)
        for profiled in (False, True):
            schema = f"{SCHEMA_PREFIX}profile_{uuid.uuid4().hex[:8]}"
            env = Env(Path("."), size, {"dsn": dsn, "schema": schema})
            pools = PoolStats()
            profiler = cProfile.Profile()
            if profiled:
                env.extra["_profiler"] = profiler
            else:
                pools.install()
            try:
                outcome = asyncio.run(func(env))
            finally:
                pools.uninstall()
                asyncio.run(drop_schemas(dsn, schema))
            steps = outcome.steps
            if not profiled:
                print(
                    f"{key} {case.name}: {env.elapsed / steps * 1e6:.1f} µs/step, "
                    f"{outcome.errors} errors"
                )
                print(f"  checks {outcome.checks}")
                print(f"  {pools.summary(steps)} (warm-up included)")
                continue
            print(f"  under cProfile: {env.elapsed / steps * 1e6:.1f} µs/step")
            entries: dict[Any, Any] = vars(pstats.Stats(profiler))["stats"]
            by_area: dict[str, float] = {}
            for (file, _, name), (_, _, own, _, _) in entries.items():
                area = _area(file, name)
                by_area[area] = by_area.get(area, 0.0) + own
            for area, own in sorted(by_area.items(), key=lambda item: -item[1]):
                print(f"  {own / steps * 1e6:9.1f} µs/step own time  {area}")
            ranked = sorted(entries.items(), key=lambda item: -item[1][2])[:top]
            print(f"  {'own µs/step':>11} {'calls/step':>10}  function")
            for (file, line, name), (_, calls, own, _, _) in ranked:
                where = name if file == "~" else f"{_tail(file)}:{line} {name}"
                print(f"  {own / steps * 1e6:11.2f} {calls / steps:10.2f}  {where}")
        print()


def _tail(file: str) -> str:
    parts = Path(file).parts
    for root in ("durable", "durable_postgres", "asyncpg", "asyncio", "benchmarks"):
        if root in parts:
            return "/".join(parts[parts.index(root) :])
    return Path(file).name


def _area(file: str, name: str) -> str:
    if file == "~":
        if "epoll" in name:
            return "epoll (waiting for the server, mostly)"
        if "_socket.socket" in name:
            return "socket send/recv (syscalls: loopback TCP, waking the server)"
        if "asyncpg" in name or "protocol" in name:
            return "asyncpg (C)"
        if "json" in name or "encode" in name or "decode" in name:
            return "json (C)"
        return "other builtins (C)"
    for marker, area in (
        ("durable_postgres", "durable_postgres (Python)"),
        ("/durable/", "durable core (Python)"),
        ("/asyncpg/", "asyncpg (Python)"),
        ("/asyncio/", "asyncio (Python)"),
        ("/selectors.py", "asyncio (Python)"),
        ("/benchmarks/", "benchmark harness and steps"),
        ("/json/", "json (Python)"),
    ):
        if marker in file:
            return area
    return "other Python"


Operation = Callable[[int], Coroutine[Any, Any, Any]]


def decompose(dsn: str, n: int, rounds: int) -> None:
    """A's step taken apart, each part timed on its own (µs per operation, in this
    process): the floor's INSERT, the store's checkpoint statement on a plain connection,
    the pool's reset query, an empty acquire/release of the store's pool,
    ``checkpoint_step`` through the store, and the whole durable step (workflows of
    ``n // 10`` steps); then the engine alone on the in-memory store. The parts run in
    turns of ``n // 10`` operations, so that a change of the machine's load hits them
    all; medians of ``rounds`` rounds. Reads the store's SQL (``_sql``): diagnosis only."""
    import statistics

    from workloads import make_app

    from durable import InMemoryStore

    chunk = max(1, n // 10)

    async def interleaved(ops: dict[str, Operation]) -> dict[str, float]:
        spent = dict.fromkeys(ops, 0.0)
        for op in ops.values():
            await op(-1)
        for turn in range(n // chunk):
            for key, op in ops.items():
                started = time.perf_counter()
                await op(turn)
                spent[key] += time.perf_counter() - started
        return {key: total / (n // chunk * chunk) * 1e6 for key, total in spent.items()}

    async def one_round(r: int) -> dict[str, float]:
        schema = f"{SCHEMA_PREFIX}parts_{uuid.uuid4().hex[:8]}"
        env = Env(Path("."), n, {"dsn": dsn, "schema": schema})
        store_env = Env(Path("."), n, {"dsn": dsn, "schema": f"{schema}_store"})
        async with schema_of_case(env, tables=True), schema_of_case(store_env, tables=False):
            conn = await connect(env)
            store: Any = counting_store(store_env)
            try:
                app = make_app(store)
                async with app.wf:
                    await app.flow("warm", WARMUP)
                    pool = await store._connector.pool()  # pyright: ignore[reportPrivateUsage]
                    sql = store._sql.checkpoint  # pyright: ignore[reportPrivateUsage]
                    owner = "bench-owner"
                    await store.claim_run("own", "bench", None, owner=owner, lease_seconds=600)
                    value = json.dumps({"i": 1, "ok": True})

                    async def insert(turn: int) -> None:
                        for i in range(chunk):
                            await conn.execute(INSERT_STEP, "r", f"{turn}.{i}", value, time.time())

                    async def statement(turn: int) -> None:
                        for i in range(chunk):
                            await conn.fetchrow(sql, "own", f"raw{turn}.{i}", value, 1, owner)

                    unlocked = sql.replace(" FOR UPDATE", "")
                    plain = (
                        f"INSERT INTO {schema}_store.steps (run_id, step_id, result, attempt, "
                        "created_at) VALUES ($1, $2, $3, 1, extract(epoch FROM now()))"
                    )

                    async def without_lock(turn: int) -> None:
                        for i in range(chunk):
                            await conn.fetchrow(
                                unlocked, "own", f"nolock{turn}.{i}", value, 1, owner
                            )

                    async def store_table(turn: int) -> None:
                        for i in range(chunk):
                            await conn.execute(plain, "plain", f"{turn}.{i}", value)

                    async def reset(turn: int) -> None:
                        query = conn.get_reset_query()
                        for _ in range(chunk):
                            await conn.execute(query)

                    async def empty(turn: int) -> None:
                        for _ in range(chunk):
                            async with pool.acquire():
                                pass

                    async def api(turn: int) -> None:
                        for i in range(chunk):
                            await store.checkpoint_step(
                                "own", f"api{turn}.{i}", {"i": i}, owner=owner
                            )

                    async def durable(turn: int) -> None:
                        await app.flow(f"a{turn}", chunk)

                    found = await interleaved({
                        "floor: INSERT, autocommit": insert,
                        "store's checkpoint SQL, one conn": statement,
                        "  the same without FOR UPDATE": without_lock,
                        "  a plain INSERT into its steps": store_table,
                        "reset query (pool release)": reset,
                        "store pool: acquire + release": empty,
                        "store.checkpoint_step()": api,
                        f"durable step ({chunk}-step runs)": durable,
                    })  # fmt: skip
            finally:
                await conn.close()
        memory = make_app(InMemoryStore())
        async with memory.wf:
            await memory.flow("warm", WARMUP)
            started = time.perf_counter()
            await memory.flow("a", n)
            found["engine only (InMemoryStore)"] = (time.perf_counter() - started) / n * 1e6
        return found

    results = [asyncio.run(one_round(r)) for r in range(rounds)]
    floor = next(iter(results[0]))
    print(
        f"A's step taken apart: {n} operations each, medians of {rounds} rounds: µs/op "
        "(range), and ÷ the floor's INSERT of the same round (range)"
    )
    for key in results[0]:
        values = sorted(res[key] for res in results)
        ratios = sorted(res[key] / res[floor] for res in results)
        print(
            f"  {key:36} {statistics.median(values):8.1f} ({values[0]:.0f}-{values[-1]:.0f})"
            f"  {statistics.median(ratios):5.2f}× ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )


# -- the command line ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("DURABLE_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions of each case (default 7)")
    parser.add_argument("--only", help=f"comma-separated workloads by prefix: {','.join(KEYS)}")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--profile", metavar="KEY", help="cProfile one durable case: A, C200 ...")
    parser.add_argument("--top", type=int, default=25, help="functions --profile prints")
    parser.add_argument(
        "--decompose", action="store_true", help="time the parts of A's step one by one"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.decompose:
        check_server(args.dsn)
        decompose(args.dsn, 200 if args.quick else 1000, args.reps or 3)
        return 0
    if args.profile:
        check_server(args.dsn)
        for key in select_keys(args.profile):
            profile(key, args.dsn, args.quick, args.top)
        return 0
    reps = args.reps or (1 if args.quick else 7)
    began = time.perf_counter()
    measured = measure(args.only, args.quick, reps, args.dsn)
    print(f"durable on PostgreSQL: {reps} repetition(s), medians")
    print("\n".join(measured.header) + "\n")
    print(measured.table)
    print()
    print(format_targets(measured.targets))
    print(f"\n(ran in {time.perf_counter() - began:.0f} s)")
    if args.json:
        payload = [
            {"workload": r.workload, "variant": r.variant, "results": [vars(x) for x in r.results]}
            for r in measured.rows
        ]
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
