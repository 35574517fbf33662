"""The floors: the same workloads without durable, measured in the same run.

- ``sqlite3``: the standard library driver on the event loop's thread, WAL,
  ``synchronous=NORMAL`` (or ``FULL``), each write its own ``BEGIN IMMEDIATE`` ...
  ``COMMIT``; the step's result is ``json.dumps``-ed, as any store must.
- ``aiosqlite``: one aiosqlite connection, WAL, ``synchronous=NORMAL``; each write is
  ``await execute(...)`` then ``await commit()`` (aiosqlite's default implicit
  transactions, so concurrent tasks' writes can share a commit: see ``commits``).
- ``plain``: the same async calls with no store at all (workload E).

The tables mirror durable's ``steps`` table (same primary key, ``WITHOUT ROWID``).
Nothing here imports ``durable``, so a floor's peak RSS is that of the floor alone.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiosqlite
from harness import Env, Outcome

#: Writes each case does before it is measured, on the same connection.
WARMUP = 5
STEPS_B = 3
STEPS_C = 5

SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE steps (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, result TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;
"""
INSERT_RUN = "INSERT INTO runs (run_id, status, updated_at) VALUES (?, 'running', ?)"
INSERT_STEP = (
    "INSERT INTO steps (run_id, step_id, result, attempt, created_at) VALUES (?, ?, ?, 1, ?)"
)
FINISH_RUN = "UPDATE runs SET status = 'completed', updated_at = ? WHERE run_id = ?"
SELECT_STEPS = "SELECT step_id, result FROM steps WHERE run_id = ?"


async def plain_step(i: int) -> dict[str, Any]:
    """The trivial step of every workload."""
    return {"i": i, "ok": True}


async def plain_flow(steps: int) -> int:
    for i in range(steps):
        await plain_step(i)
    return steps


async def plain_waiting_flow(steps: int) -> int:
    """plain_flow, giving the loop back before each step as a store's commit would."""
    for i in range(steps):
        await asyncio.sleep(0)
        await plain_step(i)
    return steps


# -- sqlite3 ----------------------------------------------------------------------------


def open_sqlite3(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.executescript(SCHEMA)
    return conn


def commit_one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(sql, params)
    conn.execute("COMMIT")


async def steps_sqlite3(conn: sqlite3.Connection, run_id: str, steps: int) -> int:
    for i in range(steps):
        result = await plain_step(i)
        commit_one(conn, INSERT_STEP, (run_id, f"step#{i}", json.dumps(result), time.time()))
    return steps


async def flow_sqlite3(conn: sqlite3.Connection, run_id: str, steps: int) -> int:
    """A workflow's commits: its run record, one per step, its outcome."""
    commit_one(conn, INSERT_RUN, (run_id, time.time()))
    await steps_sqlite3(conn, run_id, steps)
    commit_one(conn, FINISH_RUN, (time.time(), run_id))
    return steps


async def _sequential_sqlite3(env: Env, synchronous: str) -> Outcome:
    conn = open_sqlite3(env.path(), synchronous)
    await steps_sqlite3(conn, "warm", WARMUP)
    async with env.measure():
        await steps_sqlite3(conn, "a", env.size)
    conn.close()
    return Outcome(steps=env.size, workflows=1)


async def sequential_sqlite3(env: Env) -> Outcome:
    """A's floor: one INSERT + COMMIT per step."""
    return await _sequential_sqlite3(env, "NORMAL")


async def sequential_sqlite3_full(env: Env) -> Outcome:
    """A's floor with ``synchronous=FULL`` (an fsync per commit), for durability="full"."""
    return await _sequential_sqlite3(env, "FULL")


async def workflows_sqlite3(env: Env) -> Outcome:
    """B's floor: per workflow the commits a 3-step durable run needs (1 + 3 + 1)."""
    conn = open_sqlite3(env.path())
    await flow_sqlite3(conn, "warm", STEPS_B)
    async with env.measure():
        for w in range(env.size):
            await flow_sqlite3(conn, f"b-{w}", STEPS_B)
    conn.close()
    return Outcome(steps=env.size * STEPS_B, workflows=env.size, checks={"commits_per_wf": 5})


async def replay_read_sqlite3(env: Env) -> Outcome:
    """D's floor: one SELECT of a run's rows and a ``json.loads`` of each, on a new connection."""
    path = env.path()
    conn = open_sqlite3(path)
    conn.execute("BEGIN IMMEDIATE")
    for run_id, steps in (("warm", WARMUP), ("replay", env.size)):
        for i in range(steps):
            result = json.dumps(await plain_step(i))
            conn.execute(INSERT_STEP, (run_id, f"step#{i}", result, time.time()))
    conn.execute("COMMIT")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    _read_steps(conn, "warm")
    async with env.measure():
        values = _read_steps(conn, "replay")
    conn.close()
    return Outcome(steps=env.size, workflows=1, checks={"rows": len(values)})


def _read_steps(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    rows = conn.execute(SELECT_STEPS, (run_id,)).fetchall()
    return {step_id: json.loads(result) for step_id, result in rows}


# -- aiosqlite --------------------------------------------------------------------------


async def open_aiosqlite(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.executescript(SCHEMA)
    return conn


class AioWriter:
    """INSERT (or UPDATE) + commit on one aiosqlite connection; counts the real commits."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.commits = 0

    async def write(self, sql: str, params: tuple[Any, ...]) -> None:
        await self.conn.execute(sql, params)
        if self.conn.in_transaction:  # else another task's commit already took this write
            self.commits += 1
        await self.conn.commit()

    async def steps(self, run_id: str, steps: int) -> int:
        for i in range(steps):
            result = await plain_step(i)
            await self.write(INSERT_STEP, (run_id, f"step#{i}", json.dumps(result), time.time()))
        return steps

    async def flow(self, run_id: str, steps: int) -> int:
        await self.write(INSERT_RUN, (run_id, time.time()))
        await self.steps(run_id, steps)
        await self.write(FINISH_RUN, (time.time(), run_id))
        return steps


async def sequential_aiosqlite(env: Env) -> Outcome:
    """A's second floor: one INSERT + commit per step through aiosqlite's thread."""
    conn = await open_aiosqlite(env.path())
    try:
        writer = AioWriter(conn)
        await writer.steps("warm", WARMUP)
        async with env.measure():
            await writer.steps("a", env.size)
    finally:
        await conn.close()
    return Outcome(steps=env.size, workflows=1)


async def concurrent_aiosqlite(env: Env) -> Outcome:
    """C's floor: the workflows at once, each writing 1 + 5 + 1 times, on one connection."""
    conn = await open_aiosqlite(env.path())
    try:
        writer = AioWriter(conn)
        await writer.flow("warm", STEPS_C)
        writer.commits = 0
        async with env.measure():
            results = await asyncio.gather(
                *(writer.flow(f"c-{w}", STEPS_C) for w in range(env.size)),
                return_exceptions=True,
            )
    finally:
        await conn.close()
    errors = sum(1 for r in results if isinstance(r, BaseException))
    checks = {"writes_per_wf": 2 + STEPS_C, "commits": writer.commits}
    return Outcome(steps=env.size * STEPS_C, workflows=env.size, errors=errors, checks=checks)


# -- plain calls (workload E) -----------------------------------------------------------


async def sequential_plain(env: Env) -> Outcome:
    await plain_flow(WARMUP)
    async with env.measure():
        await plain_flow(env.size)
    return Outcome(steps=env.size, workflows=1)


async def workflows_plain(env: Env) -> Outcome:
    await plain_flow(STEPS_B)
    async with env.measure():
        for _ in range(env.size):
            await plain_flow(STEPS_B)
    return Outcome(steps=env.size * STEPS_B, workflows=env.size)


async def _gathered(env: Env, flow: Callable[[int], Coroutine[Any, Any, int]]) -> Outcome:
    await flow(STEPS_C)
    async with env.measure():
        results = await asyncio.gather(
            *(flow(STEPS_C) for _ in range(env.size)), return_exceptions=True
        )
    errors = sum(1 for r in results if isinstance(r, BaseException))
    return Outcome(steps=env.size * STEPS_C, workflows=env.size, errors=errors)


async def concurrent_plain(env: Env) -> Outcome:
    return await _gathered(env, plain_flow)


async def concurrent_plain_waiting(env: Env) -> Outcome:
    """C's plain calls, each waiting once per step: the loop's own cost of the gather."""
    return await _gathered(env, plain_waiting_flow)
